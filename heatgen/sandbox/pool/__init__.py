"""The sandbox's compute and network stand-in (``heatgen sandbox up --pool``).

Every server Heat creates becomes a sandbox host: a network namespace with its own address on
a bridge of the sandbox, a mount namespace with an overlay over a cached Debian 13 root that
holds Debian's HTCondor, and a PID namespace whose first process is killed to "delete" it. The
host boots the user data Heat resolved for its server with the root's own cloud-init, so the
boot payloads run as on a cloud. Nothing leaves the machine: no default route, no NAT.
"""
