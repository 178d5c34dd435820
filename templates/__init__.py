"""Jinja2 sources of the HOT templates, boot payloads and environment heatgen renders."""
