"""Small MaxMind-format databases for the tests, written with ``mmdb-writer``: a City and an ASN database whose
networks cover the addresses of the fixtures and of the generated datagrams in part (private ranges and some
public ones have no record, as in the real databases), with odd texts (quotes, backslashes, non-ASCII, a tab)
in what they add; and the real 2018 GeoLite2 City database that ``maxminddb-geolite2`` ships.

The files are made once per content in the temporary directory (the byte-identity tests decode the corpus in
a second process without the C extension: both read the same files).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson


def _city(country: str, name: str, continent: str = "EU", **more: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "continent": {
            "code": continent,
            "names": {
                "en": {"EU": "Europe", "NA": "North America", "AS": "Asia", "OC": "Oceania"}[continent],
                "de": "x",
            },
        },
        "country": {"iso_code": country, "names": {"en": name, "fr": name + " (fr)"}},
    }
    record.update(more)
    return record


# network -> record, per database; mmdb-writer keeps the most specific network of an address
CITY_NETWORKS: dict[str, dict[str, Any]] = {
    "0.0.0.0/2": _city(
        "FR",
        "France",
        city={"geoname_id": 2988507, "names": {"en": "Paris", "ja": "パリ"}},
        subdivisions=[
            {"iso_code": "IDF", "names": {"en": "Île-de-France"}},
            {"iso_code": "75", "names": {"en": "Paris"}},
        ],
        location={
            "latitude": 48.8566,
            "longitude": 2.3522,
            "accuracy_radius": 20,
            "time_zone": "Europe/Paris",
        },
    ),
    "64.0.0.0/3": _city("XQ", 'Quote "land" \\ é\t'),  # a country-level record: no city, no location
    "96.0.0.0/3": {"location": {"latitude": -33.8688, "longitude": 151.2093}},  # a location alone
    "128.0.0.0/2": _city(
        "US",
        "United States",
        "NA",
        city={"names": {"en": "Mountain View"}},
        subdivisions=[{"iso_code": "CA", "names": {"en": "California"}}],
        location={"latitude": 37.386, "longitude": -122.0838},
    ),
    "192.0.0.0/3": _city(
        "JP",
        "日本",
        "AS",
        city={"names": {"en": "東京"}},
        location={"latitude": 35.6895, "longitude": 139.69171},
    ),
    "198.51.100.0/24": _city(
        "DE", "Germany", city={"names": {"en": "Berlin"}}, location={"latitude": 52.52, "longitude": 13.405}
    ),
    "2001:db8::/33": _city(
        "DE", "Germany", city={"names": {"en": "Hamburg"}}, location={"latitude": 53.55, "longitude": 10.0}
    ),
    "2001:4860::/32": _city("US", "United States", "NA"),
    "2001:44b8::/32": _city("AU", "Australia", "OC", location={"latitude": -34.9285, "longitude": 138.6007}),
    "2a00::/12": _city("NL", "Netherlands"),
}
ASN_NETWORKS: dict[str, dict[str, Any]] = {
    "0.0.0.0/3": {"autonomous_system_number": 65002, "autonomous_system_organization": 'Transit "A" \\ GmbH'},
    "32.0.0.0/3": {"autonomous_system_number": 65020, "autonomous_system_organization": "Zwanzig ü Networks"},
    "64.0.0.0/2": {"autonomous_system_number": 65030},  # a number without an organization
    "128.0.0.0/1": {"autonomous_system_number": 15169, "autonomous_system_organization": "GOOGLE"},
    "2001:db8::/32": {"autonomous_system_number": 64496, "autonomous_system_organization": "Documentation"},
    "2a00::/12": {"autonomous_system_number": 65002, "autonomous_system_organization": 'Transit "A" \\ GmbH'},
}
# carved out of the covered ranges: no record, as for private addresses in the real databases
HOLES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8"]


def write_database(path: Path, database_type: str, networks: dict[str, Any], ip_version: int = 6) -> Path:
    """A .mmdb at ``path`` (replaced by a rename) with ``networks`` (CIDR -> record)."""
    import netaddr
    from mmdb_writer import MMDBWriter

    writer = MMDBWriter(ip_version=ip_version, database_type=database_type, ipv4_compatible=ip_version == 6)
    holes = netaddr.IPSet(HOLES)
    for cidr, record in networks.items():
        network = netaddr.IPSet([cidr])
        if network.iter_cidrs()[0].version == 4:
            network -= holes
        if ip_version == 4 and network.iter_cidrs()[0].version == 6:
            continue
        writer.insert_network(network, record)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer.to_db_file(str(temporary))
    os.replace(temporary, path)
    return path


def _cached(database_type: str, networks: dict[str, Any], ip_version: int = 6) -> Path:
    digest = hashlib.sha1(orjson.dumps([database_type, networks, HOLES, ip_version])).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / "flowsink-test-mmdb" / f"{database_type}-{digest}.mmdb"
    return path if path.exists() else write_database(path, database_type, networks, ip_version)


def city_database() -> Path:
    return _cached("GeoLite2-City", CITY_NETWORKS)


def asn_database() -> Path:
    return _cached("GeoLite2-ASN", ASN_NETWORKS)


def ipv4_only_country_database() -> Path:
    return _cached(
        "DBIP-Country-Lite", {k: v for k, v in CITY_NETWORKS.items() if ":" not in k}, ip_version=4
    )


def geolite2_city() -> Path | None:
    """The real GeoLite2 City database (2018) of the ``maxminddb-geolite2`` package, None without it."""
    try:
        from _maxminddb_geolite2 import geolite2_database
    except ImportError:
        return None
    return Path(geolite2_database())
