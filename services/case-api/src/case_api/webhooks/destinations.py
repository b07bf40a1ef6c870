"""Where webhooks may go. In production a destination on a loopback, private, link-local or otherwise
non-public address is refused (SSRF): the host is resolved, every address it resolves to is checked, and the
connection goes to an address that was checked, so a second lookup cannot point it elsewhere (DNS
rebinding). Development allows them, for a receiver on the same machine."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx


class DestinationRefused(Exception):
    """A webhook URL this service will not call."""


def check_url(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL without credentials."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused("the URL must be http:// or https:// with a host")
    if parts.username is not None or parts.password is not None:
        raise DestinationRefused("the URL must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise DestinationRefused("the URL's port is not a number from 1 to 65535") from None
    return parts.hostname, port


def public(address: str) -> bool:
    """Only globally routable unicast addresses (no loopback, private, link-local, shared, reserved,
    multicast or unspecified ones; an IPv4-mapped IPv6 address is judged as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve(host: str, port: int) -> list[str]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DestinationRefused(f"the host {host!r} does not resolve") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def checked_addresses(host: str, port: int, allow_private: bool) -> list[str]:
    """The addresses to connect to: all of them public, unless private ones are allowed."""
    addresses = await resolve(host, port)
    if not allow_private:
        refused = [a for a in addresses if not public(a)]
        if refused:
            raise DestinationRefused(
                f"the host {host!r} resolves to a non-public address ({', '.join(refused)})"
            )
    return addresses


async def check_destination(url: str, allow_private: bool) -> None:
    """Refuse, at subscription time, a URL the dispatcher would refuse to call."""
    host, port = check_url(url)
    await checked_addresses(host, port, allow_private)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks, and connects to a checked address in one step (TLS still verifies the name)."""

    def __init__(self, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await checked_addresses(host, port, self._allow_private)
        except DestinationRefused as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return await self._backend.connect_tcp(
            addresses[0], port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks go over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def client(allow_private: bool, timeout: float) -> httpx.AsyncClient:
    """An HTTP client whose every connection goes through PinnedBackend; no proxies from the environment,
    no redirects followed (a 3xx is a failed attempt, as the spec advises)."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx builds its pool without a way to pass a network backend: give it one that has it.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl.create_default_context(), network_backend=PinnedBackend(allow_private)
    )
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)
