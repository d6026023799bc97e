"""TASKS_CALLBACK_HOSTS: which receivers a callback may call, checked at submit and at send.

A pattern is a host name (``hooks.example.com``), a wildcard over its subdomains
(``*.example.com``), ``*`` (any host name), an IP address (``127.0.0.1``, ``[::1]``) or a
network (``10.0.0.0/8``); a name or an address may end in ``:port``, and then only that port
is allowed (else any). Patterns are comma-separated.

At submit, a ``callback_url``'s host (and port) must match a pattern. At send, the host is
resolved, and each address must be allowed too: an address an IP or network pattern matches,
or a public (global) one for a host a name pattern matched. So DNS cannot move an allowed name
onto an internal address (a cloud's metadata service, a database on the private network) that
was not itself allowed: a receiver on this machine or a private network is allowed by its
address (``127.0.0.1:8080``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from api.models import MAX_CALLBACK_URL_LENGTH

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_DEFAULT_PORTS = {"http": 80, "https": 443}


class HostsError(ValueError):
    """TASKS_CALLBACK_HOSTS holds something that is not a pattern."""


@dataclass(frozen=True, slots=True)
class _Name:
    """A host name pattern: exact, or (``wildcard``) any subdomain of ``name``; ``*``: any."""

    name: str
    wildcard: bool
    port: int | None

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and port != self.port:
            return False
        if self.name == "*":
            return True
        if self.wildcard:
            return host.endswith("." + self.name)
        return host == self.name


@dataclass(frozen=True, slots=True)
class _Network:
    """An address or network pattern."""

    network: IPNetwork
    port: int | None

    def matches(self, address: IPAddress, port: int) -> bool:
        if self.port is not None and port != self.port:
            return False
        return address.version == self.network.version and address in self.network


def _split_port(text: str) -> tuple[str, int | None]:
    """``host:port`` (``[v6]:port``) as host and port; a bare host keeps None."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise HostsError(f"{text!r}: an IPv6 address is written [::1] or [::1]:8080")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, None  # a name, or a bare IPv6 address
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise HostsError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


class CallbackHosts:
    """The parsed patterns of TASKS_CALLBACK_HOSTS."""

    def __init__(self, text: str = "") -> None:
        self.text = text
        self._names: list[_Name] = []
        self._networks: list[_Network] = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            if "/" in item:
                try:
                    network = ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise HostsError(f"{item!r} is not a network (10.0.0.0/8)") from None
                self._networks.append(_Network(network, None))
                continue
            host, port = _split_port(item)
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                pass
            else:
                self._networks.append(_Network(ipaddress.ip_network(address), port))
                continue
            name = host.lower().rstrip(".")
            wildcard = name.startswith("*.")
            if wildcard:
                name = name[2:]
            if not name or (name != "*" and not all(_label_ok(p) for p in name.split("."))):
                raise HostsError(
                    f"{item!r} is not a host pattern: write a name (hooks.example.com), "
                    "*.example.com, *, an address (127.0.0.1) or a network (10.0.0.0/8), "
                    "each with :port if only that port is allowed"
                )
            self._names.append(_Name(name, wildcard, port))
        loopback = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
        for pattern in self._names:
            if pattern.name != "localhost" and not pattern.name.endswith(".localhost"):
                continue
            if not any(
                net.network.version == a.version and a in net.network
                for net in self._networks
                for a in loopback
            ):
                raise HostsError(
                    "localhost resolves to a loopback address, which is called only when an "
                    "address pattern allows it: add 127.0.0.1 (and [::1]), or write 127.0.0.1 "
                    "with its port instead and use that address in callback_url"
                )

    def __bool__(self) -> bool:
        """Whether any host is allowed (callbacks are off otherwise)."""
        return bool(self._names or self._networks)

    def __repr__(self) -> str:
        return f"CallbackHosts({self.text!r})"

    def refusal(self, url: str) -> str | None:
        """Why ``url`` may not be a ``callback_url`` (None: it may)."""
        if len(url) > MAX_CALLBACK_URL_LENGTH:
            return f"Longer than {MAX_CALLBACK_URL_LENGTH} characters."
        try:
            parts = urlsplit(url)
            host, port = target(parts)
        except ValueError as exc:
            return str(exc)
        if parts.username is not None or parts.password is not None:
            return (
                "Must not hold a user name or password: deliveries are signed "
                "(webhook-signature), which the receiver checks instead."
            )
        if not self:
            return (
                "Callbacks are off on this server: TASKS_CALLBACK_HOSTS allows no host. "
                "Its operator lists the receivers' hosts there."
            )
        if not self.allows_host(host, port):
            shown = f"[{host}]" if ":" in host else host
            return (
                f"Host {shown}:{port} is not allowed: TASKS_CALLBACK_HOSTS lists the hosts "
                "callbacks may call; ask this server's operator to add it."
            )
        return None

    def allows_host(self, host: str, port: int) -> bool:
        """Whether a URL's ``host`` (a name, or an address literal) and port are allowed."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return any(name.matches(host, port) for name in self._names)
        return self.allows_address(address, port, named=False)

    def allows_address(self, address: IPAddress, port: int, *, named: bool) -> bool:
        """Whether ``address`` may be called on ``port``: a pattern allows it, or it is public
        and it was resolved from a host name a name pattern allowed (``named``)."""
        if any(network.matches(address, port) for network in self._networks):
            return True
        return named and _public(address)


#: IPv6 prefixes that carry an IPv4 address in their last 32 bits: NAT64 (which a gateway
#: translates to that IPv4 address) and the deprecated IPv4-compatible form.
_CARRIERS = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("::/96"))


def _public(address: IPAddress) -> bool:
    """Whether ``address`` is a public unicast one, and so is any IPv4 address it carries
    (IPv4-mapped, 6to4, Teredo, NAT64): a name may resolve to ``64:ff9b::a9fe:a9fe``, which
    a NAT64 gateway sends to 169.254.169.254."""
    if not address.is_global or address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        carried: ipaddress.IPv4Address | None = address.ipv4_mapped or address.sixtofour
        if carried is None and address.teredo is not None:
            carried = address.teredo[1]
        if carried is None and any(address in prefix for prefix in _CARRIERS):
            carried = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if carried is not None and not _public(carried):
            return False
    return True


def _label_ok(label: str) -> bool:
    """A label of a host name (or of a pattern): ASCII letters, digits, '-' and '_' (which
    some internal names use), not at either end '-'."""
    return (
        0 < len(label) <= 63
        and label.isascii()
        and all(c.isalnum() or c in "-_" for c in label)
        and not label.startswith("-")
        and not label.endswith("-")
    )


def target(parts: SplitResult) -> tuple[str, int]:
    """The host (lower case, IPv6 without brackets) and port an http(s) URL calls; raises
    ValueError saying what is wrong with it."""
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError("Must be an absolute http:// or https:// URL.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ValueError("Must be an absolute http:// or https:// URL with a host.")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("The port must be a number from 1 to 65535.")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not all(_label_ok(label) for label in host.split(".")):
            raise ValueError(
                f"{host!r} is not a host name: each dot-separated part is 1 to 63 letters, "
                "digits or '-', not starting or ending with '-' (a name outside ASCII is "
                "written in its punycode form, xn--…)."
            ) from None
    return host, port if port is not None else _DEFAULT_PORTS[parts.scheme]
