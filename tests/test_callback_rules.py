"""TASKS_CALLBACK_HOSTS and TASKS_WEBHOOK_SECRET: which receivers may be called, and how a
delivery is signed (against the Standard Webhooks specification's own example)."""

from __future__ import annotations

import ipaddress

import pytest

from api.callbacks.hosts import CallbackHosts, HostsError
from api.callbacks.signing import SecretError, parse_secrets, sign
from api.config import ConfigError, Settings

HOSTS = CallbackHosts("127.0.0.1:8080, *.example.com, hooks.io, 10.0.0.0/8, [::1], api.test:443")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/x",
        "https://a.example.com/hook?token=1",
        "https://a.b.example.com/",
        "http://hooks.io:9999/",
        "https://HOOKS.io/",
        "http://10.2.3.4/",
        "http://[::1]:5/",
        "https://api.test/",
    ],
)
def test_allowed(url: str) -> None:
    assert HOSTS.refusal(url) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8081/x", "not allowed"),
        ("https://example.com/", "not allowed"),  # *.example.com: its subdomains only
        ("https://evil-example.com/", "not allowed"),
        ("http://api.test/", "not allowed"),  # port 80, not 443
        ("ftp://hooks.io/", "http"),
        ("/relative", "http"),
        ("hooks.io/x", "http"),
        ("http://u:p@hooks.io/", "user name"),
        ("http://hooks.io:99999/", "port"),
        ("http://127.0.0.2:8080/", "not allowed"),
        ("https://hooks.io/" + "x" * 2048, "2048"),
    ],
)
def test_refused(url: str, why: str) -> None:
    refusal = HOSTS.refusal(url)
    assert refusal is not None and why in refusal


def test_callbacks_are_off_without_hosts() -> None:
    refusal = CallbackHosts("").refusal("https://hooks.io/")
    assert refusal is not None and "TASKS_CALLBACK_HOSTS" in refusal


def test_an_allowed_name_may_not_resolve_to_an_internal_address() -> None:
    public, internal = ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.5")
    names = CallbackHosts("hooks.io")
    assert names.allows_address(public, 443, named=True)
    assert not names.allows_address(internal, 443, named=True)
    assert not names.allows_address(ipaddress.ip_address("127.0.0.1"), 443, named=True)
    assert not names.allows_address(ipaddress.ip_address("169.254.169.254"), 80, named=True)
    # Allowed by its address, it may.
    assert HOSTS.allows_address(internal, 443, named=True)


@pytest.mark.parametrize(
    "text", ["a b", "*.*.x", "10.0.0.0/99", "host:0", "host:x", "[::1", "localhost:8080"]
)
def test_a_bad_pattern_is_a_config_error(text: str) -> None:
    with pytest.raises(HostsError):
        CallbackHosts(text)
    with pytest.raises(ConfigError, match="TASKS_CALLBACK_HOSTS"):
        Settings.from_mapping(
            {"TASKS_CALLBACK_HOSTS": text, "TASKS_WEBHOOK_SECRET": "whsec_" + "A" * 24}
        )


def test_the_specifications_example_signature() -> None:
    # https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
    keys = parse_secrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign(keys, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_several_secrets_sign_each() -> None:
    keys = parse_secrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_" + "QUJD" * 6)
    signature = sign(keys, "msg_1", 1, b"{}")
    assert [part[:3] for part in signature.split(" ")] == ["v1,", "v1,"]


@pytest.mark.parametrize("text", ["s3cr3tvalue", "whsec_***zz", "whsec_QUJDRA"])
def test_a_bad_secret_is_refused_without_showing_it(text: str) -> None:
    with pytest.raises(SecretError) as raised:
        parse_secrets(text)
    assert text not in str(raised.value)


def test_hosts_need_a_secret_and_the_secret_is_never_shown() -> None:
    with pytest.raises(ConfigError, match="TASKS_WEBHOOK_SECRET"):
        Settings.from_mapping({"TASKS_CALLBACK_HOSTS": "hooks.io"})
    settings = Settings.from_mapping(
        {
            "TASKS_CALLBACK_HOSTS": "hooks.io",
            "TASKS_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        }
    )
    assert "MfKQ9r8" not in repr(settings)
    assert settings.webhook_keys and settings.hosts


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://a.example.com:0/", "port"),
        ("http://.example.com/", "not a host name"),
        ("http://a..example.com/", "not a host name"),
        ("http://-a.example.com/", "not a host name"),
        ("http://evil.com%23.example.com/", "not a host name"),
        ("http://bücher.example.com/", "punycode"),
        ("http://[::2]:80/", "[::2]:80 is not allowed"),
    ],
)
def test_urls_no_receiver_could_answer_are_refused(url: str, why: str) -> None:
    refusal = HOSTS.refusal(url)
    assert refusal is not None and why in refusal


def test_a_punycode_name_is_a_name() -> None:
    assert HOSTS.refusal("https://xn--bcher-kva.example.com/") is None


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b::a00:5",  # NAT64 of 10.0.0.5
        "::a9fe:a9fe",  # IPv4-compatible
        "2002:a9fe:a9fe::1",  # 6to4
        "::ffff:127.0.0.1",  # IPv4-mapped
        "224.0.0.251",
        "ff02::1",
    ],
)
def test_an_address_that_carries_an_internal_one_is_not_public(address: str) -> None:
    assert not CallbackHosts("hooks.io").allows_address(
        ipaddress.ip_address(address), 443, named=True
    )


def test_a_nat64_address_of_a_public_one_is() -> None:
    public = ipaddress.ip_address("64:ff9b::5db8:d822")  # 93.184.216.34
    assert CallbackHosts("hooks.io").allows_address(public, 443, named=True)


def test_localhost_is_allowed_only_with_its_addresses() -> None:
    CallbackHosts("localhost:8080, 127.0.0.1:8080")
    with pytest.raises(HostsError, match=r"127\.0\.0\.1"):
        CallbackHosts("localhost:8080")
