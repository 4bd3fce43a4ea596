"""What every way in shares, whatever it serves: checks on the request head (pure)."""

from gateway.http.host import HostRules, check_forwarded_host, check_host

__all__ = ["HostRules", "check_forwarded_host", "check_host"]
