"""Community ID against the published vectors of the community-id-spec baseline."""

import pytest

from flowsink.normalize.common import community_id, network_type, transport_name


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("128.232.110.120", "66.35.250.204", 6, 34855, 80), "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
        (("66.35.250.204", "128.232.110.120", 6, 80, 34855), "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
        (("192.168.0.89", "192.168.0.1", 1, 8, 0), "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
        (("192.168.0.1", "192.168.0.89", 1, 0, 0), "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    ],
)
def test_community_id_vectors(args, expected):
    assert community_id(*args) == expected


def test_community_id_rejects_mixed_families_and_garbage():
    assert community_id("10.0.0.1", "::1", 6, 1, 2) is None
    assert community_id("not-an-ip", "10.0.0.1", 6, 1, 2) is None


def test_names():
    assert transport_name(6) == "tcp"
    assert transport_name(250) is None
    assert network_type("2001:db8::1") == "ipv6"
    assert network_type("10.1.2.3") == "ipv4"
