"""What every way in shares, whatever it serves: checks on the request head (pure)."""

from gateway.http.host import HostRules, check_host

__all__ = ["HostRules", "check_host"]
