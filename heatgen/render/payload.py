"""Boot payload data: where each image family gets HTCondor, and how a worker lays out its slots.

The cloud-config templates (``templates/*-boot.yaml.j2`` and ``templates/payload/``) hold no
per-distribution branches: everything that differs between images is a row of
:data:`DISTRIBUTIONS`, and :func:`payload_context` turns a site into the extra Jinja context
the templates render from.

Repository layout, as documented by HTCondor ("Linux (from our repositories)") and used by
its ``get_htcondor`` installer: ``<repo>/<channel>/htcondor-release-current.el9.noarch.rpm``
for Enterprise Linux (the release RPM carries the ``.repo`` file and signing keys, packages
need EPEL and CRB), ``<repo>/keys/HTCondor-<channel>-Key`` plus
``deb <repo>/ubuntu/<channel> <codename> main`` for Ubuntu. Debian 13 uses no external
repository: its own archive carries HTCondor 23.9 (package ``condor``), and an image that
already has it installs nothing, so that such an image boots without network access to a
mirror.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from heatgen.config import Group, OsFamily, Site

# The official HTCondor download host: get_htcondor's DOWNLOAD_URL and the 25.x install docs.
# The 24.x docs name https://research.cs.wisc.edu/htcondor/repo, with the same layout.
HTCONDOR_REPO = "https://htcss-downloads.chtc.wisc.edu/repo"

# Shell lines below run inside the setup script, where ``${root}`` is the filesystem root
# ("" on a VM; a scratch directory in the tests). Placeholders: {repo}, {channel}, {codename},
# {key} (the apt keyring file).
_APT = "DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600"
_APT_KEY = "/etc/apt/keyrings/htcondor.asc"


@dataclass(frozen=True)
class Distribution:
    """How one image family installs HTCondor from the official repositories."""

    os: OsFamily
    label: str
    package_manager: str
    repo_setup: tuple[str, ...]
    install: tuple[str, ...]
    codename: str = ""
    source: str = ""

    @property
    def origin(self) -> str:
        """Where HTCondor comes from, for the setup script's comment."""
        return self.source or f"the official repository for {self.label}"

    def commands(self, channel: str, repo: str = HTCONDOR_REPO) -> list[str]:
        """The shell lines that add the ``channel`` repository and install HTCondor."""
        values = {"repo": repo, "channel": channel, "codename": self.codename, "key": _APT_KEY}
        return [line.format(**values) for line in (*self.repo_setup, *self.install)]


def _ubuntu(os: OsFamily, version: str, codename: str) -> Distribution:
    return Distribution(
        os=os,
        label=f"Ubuntu {version}",
        package_manager="apt-get",
        codename=codename,
        repo_setup=(
            'install -d -m 0755 "${{root}}/etc/apt/keyrings" "${{root}}/etc/apt/sources.list.d"',
            'curl -fsSL --retry 5 -o "${{root}}{key}" {repo}/keys/HTCondor-{channel}-Key',
            (
                "printf 'deb [signed-by={key}] %s {codename} main\\n' {repo}/ubuntu/{channel}"
                ' >"${{root}}/etc/apt/sources.list.d/htcondor.list"'
            ),
            f"{_APT} update",
        ),
        install=(f"{_APT} install condor nftables",),
    )


DISTRIBUTIONS: dict[OsFamily, Distribution] = {
    OsFamily.EL9: Distribution(
        os=OsFamily.EL9,
        label="Enterprise Linux 9",
        package_manager="dnf",
        repo_setup=(
            (
                "dnf install -y epel-release || dnf install -y"
                " https://dl.fedoraproject.org/pub/epel/epel-release-latest-9.noarch.rpm"
            ),
            "crb enable || dnf config-manager --set-enabled crb",
            "dnf install -y {repo}/{channel}/htcondor-release-current.el9.noarch.rpm",
        ),
        install=("dnf install -y condor nftables",),
    ),
    OsFamily.UBUNTU_2204: _ubuntu(OsFamily.UBUNTU_2204, "22.04", "jammy"),
    OsFamily.UBUNTU_2404: _ubuntu(OsFamily.UBUNTU_2404, "24.04", "noble"),
    OsFamily.DEBIAN_13: Distribution(
        os=OsFamily.DEBIAN_13,
        label="Debian 13",
        package_manager="apt-get",
        source="Debian 13's own archive (no external repository)",
        repo_setup=(),
        install=(
            "if [ \"$(dpkg-query -W --showformat='${{Status}}\\n' condor nftables curl 2>/dev/null"
            " | grep -c ' ok installed$')\" != 3 ]; then",
            f"  {_APT} update",
            f"  {_APT} install --no-install-recommends condor nftables curl",
            "fi",
        ),
    ),
}

# Execute-node slot layouts (condor.slots), as plain knobs so they read the same in every
# release (`use feature:StaticSlots` is newer than 24.0).
SLOT_LAYOUTS: dict[str, tuple[str, ...]] = {
    "partitionable": (
        "# One partitionable slot owning the whole machine; jobs carve dynamic slots from it.",
        "NUM_SLOTS_TYPE_1 = 1",
        "SLOT_TYPE_1 = 100%",
        "SLOT_TYPE_1_PARTITIONABLE = True",
    ),
    "static": (
        "# One static single-core slot per core.",
        "NUM_SLOTS_TYPE_1 = $(NUM_CPUS)",
        "SLOT_TYPE_1 = cpus=1",
        "SLOT_TYPE_1_PARTITIONABLE = False",
    ),
}


@dataclass(frozen=True)
class NodePayload:
    """What one role's boot script needs: its distribution and install lines."""

    distribution: Distribution
    install: list[str]


def channel_parts(version: str) -> tuple[int, str]:
    """Split a ``condor.version`` channel such as ``24.0`` or ``24.x`` into (major, minor)."""
    major, _, minor = version.partition(".")
    return int(major), minor


def version_glob(version: str) -> str:
    """The shell pattern an installed version must match: ``24.0.*`` for 24.0, ``24.*`` for 24.x."""
    major, minor = channel_parts(version)
    return f"{major}.*" if minor == "x" else f"{major}.{minor}.*"


def _node(os: OsFamily, channel: str) -> NodePayload:
    distribution = DISTRIBUTIONS[os]
    return NodePayload(distribution=distribution, install=distribution.commands(channel))


def security_metaknob(version: str) -> str:
    """The ``use security:`` template of a channel: HTCondor 23.x knows ``recommended_v9_0``
    only (``recommended`` is a fatal configuration error there), 24 and newer ``recommended``."""
    major, _ = channel_parts(version)
    return "recommended_v9_0" if major < 24 else "recommended"


def retirement_lines(seconds: int) -> list[str]:
    """The execute node's retirement time, so that a graceful drain lets running jobs finish."""
    return [
        "# condor.retirement_time: a graceful drain (heatgen scale --drain) lets running jobs",
        "# finish for this long before it evicts them; HTCondor's default 0 evicts them at once.",
        f"MAXJOBRETIREMENTTIME = {seconds}",
    ]


def payload_context(site: Site) -> dict[str, Any]:
    """Extra Jinja context for the boot payloads of ``site``.

    The limits the payload relies on (HTCondor >= 24 or Debian 13's 23.9, no markers or
    oversized text in user config) are checked when the site config is validated.
    """
    condor = site.condor
    return {
        "payload": {
            "channel": condor.version,
            "version_glob": version_glob(condor.version),
            "security_metaknob": security_metaknob(condor.version),
            "master": _node(site.master.os, condor.version),
            "slot_layout": list(SLOT_LAYOUTS[condor.slots]),
            "retirement": retirement_lines(condor.retirement_time),
            "start": condor.start,
            "extra_config": list(condor.extra_config),
        }
    }


def group_lines(group: Group) -> list[str]:
    """The execute node's configuration that comes from its worker group (none for the one
    group of a ``workers:`` site): its name as a machine attribute jobs can ask for, and
    HTCondor's GPU discovery on a group with GPUs."""
    if group.names.single:
        return []
    lines = [
        f"# worker group {group.name} ({group.where}): jobs can ask for it with",
        f'# requirements = HeatGenGroup == "{group.name}"',
        f'HeatGenGroup = "{group.name}"',
        "STARTD_ATTRS = $(STARTD_ATTRS) HeatGenGroup",
    ]
    if group.gpus:
        lines += [
            f"# {group.where}.gpus = {group.gpus}: HTCondor's GPU discovery advertises the GPUs",
            "# as a slot resource (RequestGpus)",
            "use feature:GPUs",
        ]
    return lines


def group_start(site: Site, group: Group) -> tuple[str | None, str]:
    """The execute node's START expression and where it comes from: condor.start and the
    group's start, both must hold."""
    site_start, own = site.condor.start, group.start
    if own is None:
        return site_start, "condor.start of the site config"
    if site_start is None:
        return own, f"{group.where}.start of the site config"
    return (f"({site_start}) && ({own})",
            f"condor.start and {group.where}.start of the site config")


def group_payload(site: Site, group: Group) -> dict[str, Any]:
    """Extra Jinja context for the boot payload of ``group``'s workers."""
    start, start_from = group_start(site, group)
    return {
        "worker": _node(group.os, site.condor.version),
        "lines": group_lines(group),
        "start": start,
        "start_from": start_from,
    }
