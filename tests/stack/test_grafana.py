"""exporters/grafana/: the datasources point at compose services, exemplars link to the trace
datasource, and the dashboards load from where compose mounts them."""

from __future__ import annotations

from typing import Any

from tests.stack.support import ROOT, address, bind_mounts, host_path, listening_ports, load_yaml

PROVISIONING = ROOT / "exporters" / "grafana"


def _datasources() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = load_yaml(PROVISIONING / "datasources.yml")["datasources"]
    return loaded


def test_grafana_loads_both_provisioning_files() -> None:
    targets = {target: source for source, target in bind_mounts("grafana")}
    for kind in ("datasources", "dashboards"):
        mounted = [t for t in targets if t.startswith(f"/etc/grafana/provisioning/{kind}/")]
        assert len(mounted) == 1, f"no single {kind} provisioning file in {sorted(targets)}"
        assert host_path("grafana", mounted[0]) == PROVISIONING / f"{kind}.yml"


def test_every_datasource_url_is_a_compose_service_listening_on_that_port() -> None:
    for datasource in _datasources():
        host, port = address(datasource["url"])
        assert port in listening_ports(host), f"{datasource['name']}: {host} does not listen on {port}"


def test_the_prometheus_datasource_has_uid_prometheus_and_is_the_default() -> None:
    # The dashboards choose their datasource with a template variable, which starts on the default.
    (prometheus,) = [d for d in _datasources() if d["type"] == "prometheus"]
    assert prometheus["uid"] == "prometheus"
    assert prometheus["isDefault"] is True
    assert address(prometheus["url"])[0] == "prometheus"


def test_exemplar_trace_ids_link_to_the_trace_datasource() -> None:
    (prometheus,) = [d for d in _datasources() if d["type"] == "prometheus"]
    by_uid = {d["uid"]: d for d in _datasources()}
    destinations = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    # `trace_id` is the exemplar label asyncmq's histograms carry.
    assert [d["name"] for d in destinations] == ["trace_id"]
    (uid,) = [d["datasourceUid"] for d in destinations]
    assert by_uid[uid]["type"] in {"jaeger", "tempo"}
    assert address(by_uid[uid]["url"])[0] == "jaeger"


def test_dashboards_load_from_where_compose_mounts_the_dashboards_directory() -> None:
    (provider,) = load_yaml(PROVISIONING / "dashboards.yml")["providers"]
    assert provider["type"] == "file"
    assert host_path("grafana", provider["options"]["path"]) == ROOT / "dashboards"
