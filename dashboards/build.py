#!/usr/bin/env python3
"""Writes the Grafana dashboards in this folder from one description.

The dashboards share their variables, links, units and threshold levels; writing them from
one place keeps seven JSON files consistent. Edit this file and run
`python3 dashboards/build.py`; commit the JSON it writes (Grafana provisioning reads the
JSON; `tests/dashboards.rs` checks its structure and its thresholds against
`rules/*.yaml`, `tests/metric_contract.rs` its metric names and every query against a real
Prometheus).

Threshold steps equal the default rules' levels (docs/rules.md). Grafana colours a step
when the value is >= the step, the rules fire on > (or < for the low-is-bad ones), so a
panel turns colour at exactly the level where the rule would still be quiet; that is the
closest Grafana can show.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DS = {"type": "prometheus", "uid": "${datasource}"}
TAG = "comfy-sentinel"

I = 'instance=~"$instance"'
G = 'instance=~"$instance", gpu=~"$gpu"'
W = 'instance=~"$instance", workflow=~"$workflow"'
# The same pseudo-filesystem exclusion as the HostDisk* rules.
FS = 'fstype!~"tmpfs|ramfs|devtmpfs|overlay|squashfs|nsfs|iso9660"'
RI = "$__rate_interval"

UIDS = {
    "overview": "sentinel-overview",
    "system": "sentinel-system",
    "gpu": "sentinel-gpu",
    "workflow": "sentinel-workflow",
    "recovery": "sentinel-recovery",
    "quality": "sentinel-quality",
    "sentinel": "sentinel-self",
}


# --- thresholds -------------------------------------------------------------------------

def high(warn=None, crit=None):
    """Green below, orange from the warning level, red from the critical level."""
    steps = [{"color": "green", "value": None}]
    if warn is not None:
        steps.append({"color": "orange", "value": warn})
    if crit is not None:
        steps.append({"color": "red", "value": crit})
    return {"mode": "absolute", "steps": steps}


def low(warn=None, crit=None):
    """For ratios where low is bad: red below the critical level, orange below the warning."""
    steps = [{"color": "red" if crit is not None else "orange", "value": None}]
    if crit is not None and warn is not None:
        steps.append({"color": "orange", "value": crit})
    steps.append({"color": "green", "value": warn if warn is not None else crit})
    return {"mode": "absolute", "steps": steps}


NEUTRAL = {"mode": "absolute", "steps": [{"color": "green", "value": None}]}
UP_DOWN = [{"type": "value", "options": {"0": {"text": "Down", "color": "red"},
                                         "1": {"text": "Up", "color": "green"}}}]


# --- panels -----------------------------------------------------------------------------

def target(expr, legend="", ref="A", instant=False, fmt="time_series"):
    t = {"datasource": DS, "expr": expr, "refId": ref, "legendFormat": legend or "__auto",
         "range": not instant, "instant": instant}
    if fmt != "time_series":
        t["format"] = fmt
    return t


def targets(exprs, instant=False):
    out = []
    for i, e in enumerate(exprs):
        expr, legend = e if isinstance(e, tuple) else (e, "")
        out.append(target(expr, legend, chr(ord("A") + i), instant))
    return out


def panel(kind, title, exprs, unit="short", thresholds=NEUTRAL, desc="", w=12, h=8,
          mappings=None, minv=None, maxv=None, links=None, opts=None, custom=None,
          decimals=None, instant=False):
    defaults = {"unit": unit, "thresholds": thresholds, "mappings": mappings or [],
                "color": {"mode": "thresholds" if kind in ("stat", "gauge", "bargauge")
                          else "palette-classic"}}
    if minv is not None:
        defaults["min"] = minv
    if maxv is not None:
        defaults["max"] = maxv
    if decimals is not None:
        defaults["decimals"] = decimals
    if custom:
        defaults["custom"] = custom
    p = {"type": kind, "title": title, "description": desc, "datasource": DS,
         "targets": targets(exprs, instant),
         "fieldConfig": {"defaults": defaults, "overrides": []},
         "options": opts or {}, "_w": w, "_h": h}
    if links:
        p["links"] = links
    return p


def ts(title, exprs, unit="short", thresholds=NEUTRAL, desc="", stack=False, w=12, **kw):
    show = "line+area" if len(thresholds["steps"]) > 1 else "off"
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
              "spanNulls": False, "thresholdsStyle": {"mode": show},
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    opts = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"}}
    return panel("timeseries", title, exprs, unit, thresholds, desc, w=w, custom=custom,
                 opts=opts, **kw)


def stat(title, expr, unit="short", thresholds=NEUTRAL, desc="", w=4, h=4, **kw):
    opts = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background", "graphMode": "area", "justifyMode": "auto",
            "textMode": "auto", "orientation": "auto"}
    return panel("stat", title, [expr], unit, thresholds, desc, w=w, h=h, opts=opts, **kw)


def gauge(title, expr, unit, thresholds, desc="", w=6, h=6, **kw):
    opts = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showThresholdMarkers": True, "showThresholdLabels": False, "orientation": "auto"}
    return panel("gauge", title, [expr], unit, thresholds, desc, w=w, h=h, opts=opts, **kw)


def table(title, expr, desc="", w=24, h=8, hide=("Time", "Value", "__name__")):
    p = panel("table", title, [expr], desc=desc, w=w, h=h, instant=True,
              opts={"showHeader": True, "cellHeight": "sm"})
    p["targets"][0]["format"] = "table"
    p["transformations"] = [{"id": "organize", "options": {
        "excludeByName": {k: True for k in hide}, "indexByName": {}, "renameByName": {}}}]
    return p


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_w": 24, "_h": 1}


def link_to(area, title):
    return [{"title": title, "url": f"/d/{UIDS[area]}?${{__url_time_range}}&${{instance:queryparam}}",
             "targetBlank": False}]


# --- variables --------------------------------------------------------------------------

def ds_var():
    return {"name": "datasource", "label": "Data source", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": "",
            "options": [], "skipUrlSync": False}


def query_var(name, label, query):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "definition": query, "query": {"query": query, "refId": f"{name}-query"},
            "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [], "regex": "", "sort": 1, "hide": 0, "skipUrlSync": False}


def instance_var():
    # Every sidecar exposes sentinel_build_info, so it lists every scraped instance.
    return query_var("instance", "Instance", "label_values(sentinel_build_info, instance)")


def gpu_var():
    return query_var("gpu", "GPU",
                     'label_values(gpu_memory_total_bytes{instance=~"$instance"}, gpu)')


def workflow_var():
    return query_var("workflow", "Workflow",
                     'label_values(quality_score_count{instance=~"$instance"}, workflow)')


# --- layout -----------------------------------------------------------------------------

def layout(panels):
    x = y = 0
    line_h = 0
    out = []
    for i, p in enumerate(panels, start=1):
        w, h = p.pop("_w"), p.pop("_h")
        if p["type"] == "row" or x + w > 24:
            x, y = 0, y + line_h
            line_h = 0
        p["id"] = i
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        out.append(p)
        if p["type"] == "row":
            y += h
        else:
            x += w
            line_h = max(line_h, h)
    return out


def dashboard(area, title, desc, panels, variables):
    return {
        "uid": UIDS[area],
        "title": title,
        "description": desc,
        "tags": [TAG, area],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        # Every comfy-sentinel dashboard, as a menu, keeping the time range and variables.
        "links": [{"type": "dashboards", "tags": [TAG], "asDropdown": True,
                   "title": "comfy-sentinel", "includeVars": True, "keepTime": True,
                   "icon": "external link", "targetBlank": False, "tooltip": "", "url": ""}],
        "templating": {"list": [ds_var()] + variables},
        "panels": layout(panels),
    }


# --- the dashboards ---------------------------------------------------------------------

def overview():
    prompts = f"comfyui_prompts_total{{{I}}}"
    return dashboard("overview", "comfy-sentinel / Overview",
                     "Health at a glance; each panel links to its area's dashboard.", [
        row("Workflow"),
        stat("ComfyUI", f"min(comfyui_up{{{I}}})", thresholds=low(crit=1), mappings=UP_DOWN,
             desc="0 on any instance: ComfyUIDown (critical after 1m).",
             links=link_to("workflow", "Workflow")),
        stat("Queue pending", f"sum(comfyui_queue_pending{{{I}}})", thresholds=high(10),
             desc="ComfyUIQueueBacklogGrowing needs more than 10 waiting and a growing queue.",
             links=link_to("workflow", "Workflow")),
        stat("Queue running", f"sum(comfyui_queue_running{{{I}}})",
             links=link_to("workflow", "Workflow")),
        stat("Prompt error rate (10m)",
             f'sum(rate(comfyui_prompts_total{{{I}, outcome="error"}}[10m])) / sum(rate({prompts}[10m]))',
             "percentunit", high(crit=0.05), desc="WorkflowErrorRateHigh: critical above 5%.",
             links=link_to("workflow", "Workflow")),
        stat("Prompt duration p95 (15m)",
             f"histogram_quantile(0.95, sum by (le) (rate(comfyui_prompt_duration_seconds_bucket{{{I}}}[15m])))",
             "s", high(300, 900), desc="ComfyUIPromptSlow: warning above 5m, critical above 15m.",
             links=link_to("workflow", "Workflow")),
        stat("Alerts firing",
             f'count(ALERTS{{alertstate="firing", alertname!="Watchdog", {I}}}) or vector(0)',
             thresholds=high(1), desc="Firing alerts other than the always-firing Watchdog.",
             links=link_to("sentinel", "Sentinel")),
        row("Host and GPU"),
        stat("Host CPU usage (5m)", f'max(1 - avg by (instance) (rate(node_cpu_seconds_total{{{I}, mode="idle"}}[5m])))',
             "percentunit", high(0.80, 0.95), desc="HostCpuUsageHigh: warning above 80%, critical above 95% (10m).",
             links=link_to("system", "System")),
        stat("Host memory usage", f"max(1 - node_memory_MemAvailable_bytes{{{I}}} / node_memory_MemTotal_bytes{{{I}}})",
             "percentunit", high(0.80, 0.95), desc="HostMemoryUsageHigh: warning above 80%, critical above 95%.",
             links=link_to("system", "System")),
        stat("GPUs", f"sum(gpu_devices{{{I}}})", desc="0 without NVML or without a GPU.",
             links=link_to("gpu", "GPU")),
        gauge("GPU memory used", f"gpu_memory_used_bytes{{{G}}} / gpu_memory_total_bytes{{{G}}}",
              "percentunit", high(0.90, 0.97), minv=0, maxv=1, w=4, h=4,
              desc="GpuMemoryHigh: warning above 90%, critical above 97%.",
              links=link_to("gpu", "GPU")),
        gauge("GPU temperature", f"gpu_temperature_celsius{{{G}}}", "celsius", high(85, 90),
              minv=0, maxv=100, w=4, h=4, desc="GpuTemperatureHigh: warning above 85 °C, critical above 90 °C.",
              links=link_to("gpu", "GPU")),
        ts("GPU utilization", [(f"gpu_utilization_ratio{{{G}}}", "{{instance}} GPU {{gpu}}")],
           "percentunit", w=24, h=6, minv=0, maxv=1, links=link_to("gpu", "GPU")),
        row("Recovery and quality"),
        stat("Recovery overhead (5m)",
             f"sum(rate(recovery_overhead_seconds_total{{{I}}}[5m])) / sum(rate(recovery_operation_seconds_total{{{I}}}[5m]))",
             "percentunit", high(0.07, 0.10), desc="RecoveryOverheadHigh: warning above 7%, critical above 10%.",
             links=link_to("recovery", "Recovery")),
        stat("Recovery success (10m)",
             f'sum(rate(recovery_operations_total{{{I}, outcome="recovered"}}[10m])) / sum(rate(recovery_operations_total{{{I}, outcome=~"recovered|failed"}}[10m]))',
             "percentunit", low(0.88, 0.85), desc="RecoverySuccessRatioLow: warning below 88%, critical below 85%.",
             links=link_to("recovery", "Recovery")),
        stat("Open circuit breakers", f"count(recovery_circuit_breaker_state{{{I}}} == 2) or vector(0)",
             thresholds=high(crit=1), desc="RecoveryCircuitBreakerOpen: critical when open for 5m.",
             links=link_to("recovery", "Recovery")),
        stat("Quality score (30m)",
             f"sum(rate(quality_score_sum{{{W}}}[30m])) / sum(rate(quality_score_count{{{W}}}[30m]))",
             "none", low(0.5, 0.3), decimals=2, minv=0, maxv=1,
             desc="QualityScoreLow: warning below 0.5, critical below 0.3.",
             links=link_to("quality", "Quality")),
        stat("Blank images (30m)",
             f'sum(increase(quality_image_failures_total{{{I}, check="blank"}}[30m]))',
             thresholds=high(2, 10), desc="QualityBlankImages: warning above 2, critical above 10.",
             links=link_to("quality", "Quality")),
        stat("Collectors failing", f"count(sentinel_collector_success{{{I}}} == 0) or vector(0)",
             thresholds=high(1), desc="SentinelCollectorFailing: warning after 5m.",
             links=link_to("sentinel", "Sentinel")),
        row("Alerts"),
        table("Firing alerts", f'ALERTS{{alertstate="firing", {I}}}',
              desc="Alerts Prometheus evaluates from the exported rules (and the sidecar's own, when scraped)."),
    ], [instance_var(), gpu_var(), workflow_var()])


def system():
    cpu = f"node_cpu_seconds_total{{{I}"
    return dashboard("system", "comfy-sentinel / System",
                     "Host CPU, memory, disks, network, descriptors and pressure (node_exporter names).", [
        row("Summary"),
        stat("Uptime", f"time() - node_boot_time_seconds{{{I}}}", "s"),
        stat("CPU cores", f'count by (instance) ({cpu}, mode="idle"}})'),
        stat("Memory total", f"node_memory_MemTotal_bytes{{{I}}}", "bytes"),
        stat("Load (1m)", f"node_load1{{{I}}}", decimals=2),
        stat("Read-only filesystems", f"sum by (instance) (node_filesystem_readonly{{{I}, {FS}}})",
             thresholds=high(1)),
        stat("Swap used", f"node_memory_SwapTotal_bytes{{{I}}} - node_memory_SwapFree_bytes{{{I}}}", "bytes"),
        row("CPU"),
        ts("CPU usage", [(f'1 - avg by (instance) (rate({cpu}, mode="idle"}}[{RI}]))', "{{instance}}")],
           "percentunit", high(0.80, 0.95), minv=0, maxv=1,
           desc="HostCpuUsageHigh: warning above 80%, critical above 95% (10m)."),
        ts("CPU by mode", [(f'sum by (instance, mode) (rate({cpu}, mode!="idle"}}[{RI}])) / on (instance) group_left () count by (instance) ({cpu}, mode="idle"}})',
                            "{{instance}} {{mode}}")], "percentunit", stack=True, minv=0),
        ts("CPU steal", [(f'avg by (instance) (rate({cpu}, mode="steal"}}[{RI}]))', "{{instance}}")],
           "percentunit", high(0.10, 0.25), minv=0,
           desc="HostCpuStealHigh: warning above 10%, critical above 25% (15m)."),
        ts("Load average", [(f"node_load1{{{I}}}", "{{instance}} 1m"), (f"node_load5{{{I}}}", "{{instance}} 5m"),
                            (f"node_load15{{{I}}}", "{{instance}} 15m")]),
        row("Memory"),
        ts("Memory usage", [(f"1 - node_memory_MemAvailable_bytes{{{I}}} / node_memory_MemTotal_bytes{{{I}}}", "{{instance}}")],
           "percentunit", high(0.80, 0.95), minv=0, maxv=1,
           desc="HostMemoryUsageHigh: warning above 80%, critical above 95%."),
        ts("Memory", [(f"node_memory_MemTotal_bytes{{{I}}} - node_memory_MemAvailable_bytes{{{I}}}", "{{instance}} used"),
                      (f"node_memory_Buffers_bytes{{{I}}}", "{{instance}} buffers"),
                      (f"node_memory_Cached_bytes{{{I}}}", "{{instance}} cached"),
                      (f"node_memory_MemFree_bytes{{{I}}}", "{{instance}} free")], "bytes"),
        row("Disks"),
        ts("Disk usage", [(f"1 - node_filesystem_avail_bytes{{{I}, {FS}}} / node_filesystem_size_bytes{{{I}, {FS}}}",
                           "{{instance}} {{mountpoint}}")], "percentunit", high(0.80, 0.90), minv=0, maxv=1,
           desc="HostDiskUsageHigh: warning above 80%, critical above 90%."),
        ts("Disk space available", [(f"node_filesystem_avail_bytes{{{I}, {FS}}}", "{{instance}} {{mountpoint}}")],
           "bytes", desc="HostDiskFullPredicted warns when the 1h trend reaches 0 within 4h."),
        ts("Inodes used", [(f"1 - node_filesystem_files_free{{{I}, {FS}}} / node_filesystem_files{{{I}, {FS}}}",
                            "{{instance}} {{mountpoint}}")], "percentunit", minv=0, maxv=1),
        ts("File descriptors", [(f"node_filefd_allocated{{{I}}} / node_filefd_maximum{{{I}}}", "{{instance}}")],
           "percentunit", high(0.80, 0.90), minv=0,
           desc="HostFileDescriptorsHigh: warning above 80%, critical above 90%."),
        row("Network"),
        ts("Network traffic", [(f"rate(node_network_receive_bytes_total{{{I}}}[{RI}])", "{{instance}} {{device}} in"),
                               (f"-rate(node_network_transmit_bytes_total{{{I}}}[{RI}])", "{{instance}} {{device}} out")],
           "Bps", desc="Transmit is drawn below zero."),
        ts("Network packets", [(f"rate(node_network_receive_packets_total{{{I}}}[{RI}])", "{{instance}} {{device}} in"),
                               (f"-rate(node_network_transmit_packets_total{{{I}}}[{RI}])", "{{instance}} {{device}} out")],
           "pps"),
        ts("Network errors and drops", [
            (f"rate(node_network_receive_errs_total{{{I}}}[{RI}])", "{{instance}} {{device}} rx errs"),
            (f"rate(node_network_transmit_errs_total{{{I}}}[{RI}])", "{{instance}} {{device}} tx errs"),
            (f"rate(node_network_receive_drop_total{{{I}}}[{RI}])", "{{instance}} {{device}} rx drop"),
            (f"rate(node_network_transmit_drop_total{{{I}}}[{RI}])", "{{instance}} {{device}} tx drop")], "pps"),
        row("Pressure"),
        ts("Pressure stall (some)", [
            (f"rate(node_pressure_cpu_waiting_seconds_total{{{I}}}[{RI}])", "{{instance}} cpu"),
            (f"rate(node_pressure_memory_waiting_seconds_total{{{I}}}[{RI}])", "{{instance}} memory"),
            (f"rate(node_pressure_io_waiting_seconds_total{{{I}}}[{RI}])", "{{instance}} io")],
           "percentunit", minv=0, desc="Share of time some task waited for the resource (PSI)."),
    ], [instance_var()])


def gpu():
    thermal = 'reason=~"(sw|hw)_thermal(_slowdown)?"'
    slowdown = 'reason=~"hw_slowdown|hw_power_brake(_slowdown)?"'
    return dashboard("gpu", "comfy-sentinel / GPU", "NVML device metrics per GPU.", [
        row("Devices"),
        stat("GPUs", f"sum(gpu_devices{{{I}}})", desc="0 without NVML or without a GPU: a normal state."),
        stat("NVML", f"min(gpu_nvml_up{{{I}}})", thresholds=low(crit=1), mappings=UP_DOWN),
        stat("Processes on GPUs", f"sum(gpu_processes{{{G}}})"),
        stat("Power draw", f"sum(gpu_power_usage_watts{{{G}}})", "watt"),
        stat("Hottest GPU", f"max(gpu_temperature_celsius{{{G}}})", "celsius", high(85, 90)),
        stat("Fullest GPU memory", f"max(gpu_memory_used_bytes{{{G}}} / gpu_memory_total_bytes{{{G}}})",
             "percentunit", high(0.90, 0.97)),
        table("GPU inventory", f"gpu_info{{{G}}}", h=5),
        row("Load and memory"),
        ts("GPU utilization", [(f"gpu_utilization_ratio{{{G}}}", "{{instance}} GPU {{gpu}}")],
           "percentunit", minv=0, maxv=1),
        ts("Memory bandwidth utilization", [(f"gpu_memory_utilization_ratio{{{G}}}", "{{instance}} GPU {{gpu}}")],
           "percentunit", minv=0, maxv=1),
        ts("Memory used", [(f"gpu_memory_used_bytes{{{G}}} / gpu_memory_total_bytes{{{G}}}", "{{instance}} GPU {{gpu}}")],
           "percentunit", high(0.90, 0.97), minv=0, maxv=1,
           desc="GpuMemoryHigh: warning above 90%, critical above 97% (10m)."),
        ts("Memory", [(f"gpu_memory_used_bytes{{{G}}}", "{{instance}} GPU {{gpu}} used"),
                      (f"gpu_memory_free_bytes{{{G}}}", "{{instance}} GPU {{gpu}} free"),
                      (f"gpu_memory_total_bytes{{{G}}}", "{{instance}} GPU {{gpu}} total")], "bytes"),
        ts("Memory by process", [(f"gpu_process_memory_used_bytes{{{G}}}", "{{instance}} GPU {{gpu}} {{process_name}} ({{pid}})")],
           "bytes", stack=True),
        ts("PCIe throughput", [(f"gpu_pcie_rx_bytes_per_second{{{G}}}", "{{instance}} GPU {{gpu}} rx"),
                               (f"-gpu_pcie_tx_bytes_per_second{{{G}}}", "{{instance}} GPU {{gpu}} tx")], "Bps"),
        row("Thermals, power and clocks"),
        ts("Temperature", [(f"gpu_temperature_celsius{{{G}}}", "{{instance}} GPU {{gpu}}")], "celsius",
           high(85, 90), desc="GpuTemperatureHigh: warning above 85 °C, critical above 90 °C (5m)."),
        ts("Power", [(f"gpu_power_usage_watts{{{G}}}", "{{instance}} GPU {{gpu}} draw"),
                     (f"gpu_power_limit_watts{{{G}}}", "{{instance}} GPU {{gpu}} limit")], "watt"),
        ts("Clocks", [(f"gpu_sm_clock_hertz{{{G}}}", "{{instance}} GPU {{gpu}} SM"),
                      (f"gpu_memory_clock_hertz{{{G}}}", "{{instance}} GPU {{gpu}} memory")], "hertz"),
        ts("Fan speed", [(f"gpu_fan_speed_ratio{{{G}}}", "{{instance}} GPU {{gpu}} fan {{fan}}")], "percentunit", minv=0),
        ts("Thermal throttling", [(f"gpu_clocks_event_reason_active{{{G}, {thermal}}}", "{{instance}} GPU {{gpu}} {{reason}}")],
           thresholds=high(warn=1), minv=0, maxv=1, desc="GpuThermalThrottling: warning when active for 5m."),
        ts("Hardware slowdown", [(f"gpu_clocks_event_reason_active{{{G}, {slowdown}}}", "{{instance}} GPU {{gpu}} {{reason}}")],
           thresholds=high(crit=1), minv=0, maxv=1, desc="GpuHardwareSlowdown: critical when active for 1m."),
        row("Errors"),
        ts("ECC errors (10m)", [(f"increase(gpu_ecc_errors_volatile_total{{{G}}}[10m])", "{{instance}} GPU {{gpu}} {{error_type}}")],
           thresholds=high(crit=1), minv=0, desc="GpuEccUncorrectedErrors: critical on any uncorrected error."),
        ts("XID errors (10m)", [(f"increase(gpu_xid_errors_total{{{G}}}[10m])", "{{instance}} GPU {{gpu}} XID {{xid}}")],
           thresholds=high(warn=1), minv=0, desc="GpuXidErrors: warning on any XID; GpuXidCritical for fatal ones."),
    ], [instance_var(), gpu_var()])


def workflow():
    p = f"comfyui_prompts_total{{{I}"
    dur = f"comfyui_prompt_duration_seconds_bucket{{{I}}}"
    return dashboard("workflow", "comfy-sentinel / Workflow",
                     "ComfyUI availability, queue, prompts, node execution and memory.", [
        row("Now"),
        stat("ComfyUI", f"min(comfyui_up{{{I}}})", thresholds=low(crit=1), mappings=UP_DOWN,
             desc="ComfyUIDown: critical after 1m."),
        stat("Queue pending", f"sum(comfyui_queue_pending{{{I}}})", thresholds=high(10)),
        stat("Queue running", f"sum(comfyui_queue_running{{{I}}})"),
        stat("Prompts (1h)", f"sum(increase({p}}}[1h]))", decimals=0),
        stat("Error rate (10m)", f'sum(rate({p}, outcome="error"}}[10m])) / sum(rate({p}}}[10m]))',
             "percentunit", high(crit=0.05)),
        stat("Prompt p95 (15m)", f"histogram_quantile(0.95, sum by (le) (rate({dur}[15m])))", "s", high(300, 900)),
        row("Prompts"),
        ts("Prompts by outcome", [(f"sum by (instance, outcome) (rate({p}}}[{RI}])) * 60", "{{instance}} {{outcome}}")],
           "short", desc="Finished prompts per minute."),
        ts("Error rate", [(f'sum by (instance) (rate({p}, outcome="error"}}[10m])) / sum by (instance) (rate({p}}}[10m]))', "{{instance}}")],
           "percentunit", high(crit=0.05), minv=0,
           desc="WorkflowErrorRateHigh: critical above 5% with at least 10 prompts in 10m."),
        ts("Prompt duration", [(f"histogram_quantile(0.50, sum by (instance, le) (rate({dur}[{RI}])))", "{{instance}} p50"),
                               (f"histogram_quantile(0.95, sum by (instance, le) (rate({dur}[{RI}])))", "{{instance}} p95"),
                               (f"histogram_quantile(0.99, sum by (instance, le) (rate({dur}[{RI}])))", "{{instance}} p99")],
           "s", high(300, 900), desc="ComfyUIPromptSlow (p95 over 15m): warning above 5m, critical above 15m."),
        ts("Queue", [(f"comfyui_queue_pending{{{I}}}", "{{instance}} pending"),
                     (f"comfyui_queue_running{{{I}}}", "{{instance}} running")],
           desc="ComfyUIQueueBacklogGrowing: more than 10 pending and growing for 15m."),
        row("Nodes"),
        ts("Nodes executed and cached", [(f"sum by (instance) (rate(comfyui_nodes_executed_total{{{I}}}[{RI}])) * 60", "{{instance}} executed"),
                                         (f"sum by (instance) (rate(comfyui_nodes_cached_total{{{I}}}[{RI}])) * 60", "{{instance}} cached")],
           desc="Nodes per minute."),
        ts("Node cache hit ratio", [(f"sum by (instance) (rate(comfyui_nodes_cached_total{{{I}}}[{RI}])) / (sum by (instance) (rate(comfyui_nodes_cached_total{{{I}}}[{RI}])) + sum by (instance) (rate(comfyui_nodes_executed_total{{{I}}}[{RI}])))", "{{instance}}")],
           "percentunit", minv=0, maxv=1),
        table("Node errors (24h)", f"sort_desc(sum by (instance, node_type, exception_type) (increase(comfyui_node_errors_total{{{I}}}[24h])) > 0)",
              hide=("Time",), w=12),
        row("ComfyUI API and memory"),
        ts("API latency p95", [(f"histogram_quantile(0.95, sum by (instance, endpoint, le) (rate(comfyui_api_request_duration_seconds_bucket{{{I}}}[{RI}])))",
                                "{{instance}} {{endpoint}}")], "s"),
        ts("VRAM (ComfyUI's device)", [(f"comfyui_vram_total_bytes{{{I}}} - comfyui_vram_free_bytes{{{I}}}", "{{instance}} used"),
                                       (f"comfyui_vram_total_bytes{{{I}}}", "{{instance}} total")], "bytes"),
        ts("RAM (as ComfyUI sees it)", [(f"comfyui_ram_total_bytes{{{I}}} - comfyui_ram_free_bytes{{{I}}}", "{{instance}} used"),
                                        (f"comfyui_ram_total_bytes{{{I}}}", "{{instance}} total")], "bytes"),
    ], [instance_var()])


def recovery():
    ops = f"recovery_operations_total{{{I}"
    ratio = (f'sum by (instance) (rate({ops}, outcome="recovered"}}[10m])) / '
             f'sum by (instance) (rate({ops}, outcome=~"recovered|failed"}}[10m]))')
    overhead = (f"sum by (instance) (rate(recovery_overhead_seconds_total{{{I}}}[5m])) / "
                f"sum by (instance) (rate(recovery_operation_seconds_total{{{I}}}[5m]))")
    return dashboard("recovery", "comfy-sentinel / Recovery",
                     "Retries, fallbacks and circuit breakers of the application's recovery layer.", [
        row("Now"),
        stat("Overhead (5m)", f"max({overhead})", "percentunit", high(0.07, 0.10)),
        stat("Recovery success (10m)", f"min({ratio})", "percentunit", low(0.88, 0.85)),
        stat("Recovery p95 (5m)",
             f"histogram_quantile(0.95, sum by (le) (rate(recovery_duration_seconds_bucket{{{I}}}[5m])))", "s", high(0.1)),
        stat("Open breakers", f"count(recovery_circuit_breaker_state{{{I}}} == 2) or vector(0)", thresholds=high(crit=1)),
        stat("Failed operations (1h)", f'sum(increase({ops}, outcome="failed"}}[1h]))', thresholds=high(1), decimals=0),
        stat("Operations (1h)", f"sum(increase({ops}}}[1h]))", decimals=0),
        row("Overhead and success"),
        ts("Recovery overhead", [(overhead, "{{instance}}")], "percentunit", high(0.07, 0.10), minv=0,
           desc="RecoveryOverheadHigh: warning above 7%, critical above 10% (5m)."),
        ts("Recovery success ratio", [(ratio, "{{instance}}")], "percentunit", low(0.88, 0.85), minv=0, maxv=1,
           desc="Share of operations needing recovery that then succeeded. RecoverySuccessRatioLow: warning below 88%, critical below 85%."),
        ts("Overhead by operation", [(f"sum by (instance, operation) (rate(recovery_overhead_seconds_total{{{I}}}[{RI}])) / sum by (instance, operation) (rate(recovery_operation_seconds_total{{{I}}}[{RI}]))",
                                      "{{instance}} {{operation}}")], "percentunit", high(0.07, 0.10), minv=0),
        ts("Operations by outcome", [(f"sum by (instance, outcome) (rate({ops}}}[{RI}])) * 60", "{{instance}} {{outcome}}")],
           desc="Operations per minute."),
        ts("Attempts per operation", [(f"sum by (instance, operation) (rate(recovery_attempts_total{{{I}}}[{RI}])) / sum by (instance, operation) (rate({ops}}}[{RI}]))",
                                       "{{instance}} {{operation}}")], minv=0),
        row("Latency"),
        ts("Recovery time p95", [(f"histogram_quantile(0.95, sum by (instance, le) (rate(recovery_duration_seconds_bucket{{{I}}}[5m])))", "{{instance}}")],
           "s", high(0.1), desc="RecoveryLatencyHigh: warning above 100 ms (10m)."),
        ts("Persistence latency p95", [(f"histogram_quantile(0.95, sum by (instance, operation, le) (rate(recovery_persistence_seconds_bucket{{{I}}}[{RI}])))",
                                        "{{instance}} {{operation}}")], "s"),
        row("Circuit breakers"),
        ts("Breaker state", [(f"recovery_circuit_breaker_state{{{I}}}", "{{instance}} {{breaker}}")],
           thresholds={"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                     {"color": "orange", "value": 1},
                                                     {"color": "red", "value": 2}]},
           mappings=[{"type": "value", "options": {"0": {"text": "closed"}, "1": {"text": "half-open"},
                                                   "2": {"text": "open"}}}],
           minv=0, maxv=2, desc="RecoveryCircuitBreakerOpen: critical when open (2) for 5m."),
        ts("Breaker open for", [(f"time() - recovery_circuit_breaker_open_since_seconds{{{I}}} and on (instance, breaker) recovery_circuit_breaker_state{{{I}}} == 2",
                                 "{{instance}} {{breaker}}")], "s", high(crit=300), minv=0,
           desc="How long each open breaker has been open; RecoveryCircuitBreakerOpen pages after 5m."),
        ts("Breaker transitions (1h)", [(f"sum by (instance, breaker, to) (increase(recovery_circuit_breaker_transitions_total{{{I}}}[1h]))",
                                         "{{instance}} {{breaker}} → {{to}}")], minv=0),
    ], [instance_var()])


def quality():
    score = (f"sum by (instance, workflow, metric) (rate(quality_score_sum{{{W}}}[30m])) / "
             f"sum by (instance, workflow, metric) (rate(quality_score_count{{{W}}}[30m]))")
    return dashboard("quality", "comfy-sentinel / Quality",
                     "Scores pushed by the application, built-in image checks and probes.", [
        row("Now"),
        stat("Lowest score (30m)", f"min({score})", "none", low(0.5, 0.3), decimals=2, minv=0, maxv=1),
        stat("Images checked (1h)", f"sum(increase(quality_images_checked_total{{{I}}}[1h]))", decimals=0),
        stat("Blank images (30m)", f'sum(increase(quality_image_failures_total{{{I}, check="blank"}}[30m]))',
             thresholds=high(2, 10)),
        stat("Probes failing", f"count(probe_success{{{I}}} == 0) or vector(0)", thresholds=high(crit=1)),
        row("Scores"),
        ts("Mean score", [(score, "{{instance}} {{workflow}} {{metric}}")], "none", low(0.5, 0.3), minv=0, maxv=1,
           desc="QualityScoreLow (30m mean): warning below 0.5, critical below 0.3."),
        ts("Score p10", [(f"histogram_quantile(0.10, sum by (instance, workflow, metric, le) (rate(quality_score_bucket{{{W}}}[30m])))",
                          "{{instance}} {{workflow}} {{metric}}")], "none", minv=0, maxv=1,
           desc="The worst tenth of the images, which a mean hides."),
        row("Image checks"),
        ts("Images checked", [(f"sum by (instance) (rate(quality_images_checked_total{{{I}}}[{RI}])) * 60", "{{instance}}")],
           desc="Output images checked per minute."),
        ts("Failures by check (30m)", [(f"sum by (instance, check) (increase(quality_image_failures_total{{{I}}}[30m]))", "{{instance}} {{check}}")],
           thresholds=high(2, 10), minv=0, desc="QualityBlankImages (check=blank): warning above 2, critical above 10."),
        ts("Sharpness median", [(f"histogram_quantile(0.5, sum by (instance, le) (rate(quality_image_sharpness_bucket{{{I}}}[{RI}])))", "{{instance}}")]),
        row("Probes"),
        ts("Probe success", [(f"probe_success{{{I}}}", "{{instance}} {{target}}")], thresholds=low(crit=1),
           minv=0, maxv=1, mappings=UP_DOWN),
        ts("Probe duration", [(f"probe_duration_seconds{{{I}}}", "{{instance}} {{target}}")], "s"),
        ts("HTTP probe phases", [(f"probe_http_duration_seconds{{{I}}}", "{{instance}} {{target}} {{phase}}")], "s",
           stack=True, desc="Where an HTTP probe's time goes: resolve, connect, tls, processing, transfer."),
        ts("Certificate expiry", [(f"probe_ssl_earliest_cert_expiry{{{I}}} - time()", "{{instance}} {{target}}")], "s",
           {"mode": "absolute", "steps": [{"color": "red", "value": None}, {"color": "orange", "value": 7 * 86400},
                                          {"color": "green", "value": 21 * 86400}]},
           desc="Time left on the earliest certificate of each probed target."),
    ], [instance_var(), workflow_var()])


def sentinel():
    return dashboard("sentinel", "comfy-sentinel / Sentinel",
                     "The sidecar itself: collectors, rules, alerts, notifications, ingest, process.", [
        row("Health"),
        stat("Sidecars up", f'count(up{{{I}}} == 1) or vector(0)', desc="Scrape targets Prometheus reaches."),
        stat("Collectors failing", f"count(sentinel_collector_success{{{I}}} == 0) or vector(0)", thresholds=high(1)),
        stat("Config reload", f"min(sentinel_config_last_reload_successful{{{I}}})", thresholds=low(1),
             mappings=[{"type": "value", "options": {"0": {"text": "Failed", "color": "orange"},
                                                     "1": {"text": "OK", "color": "green"}}}],
             desc="SentinelConfigReloadFailed: warning after 5m."),
        stat("Outbox", f"sum(sentinel_outbox_depth{{{I}}})", desc="Notifications waiting for delivery."),
        stat("Dead letters (30m)", f"sum(increase(sentinel_notifications_dead_total{{{I}}}[30m]))",
             thresholds=high(crit=1), desc="SentinelNotificationsDeadLettered: critical on any."),
        stat("Heartbeat age", f"max(time() - sentinel_heartbeat_last_success_timestamp_seconds{{{I}}})", "s",
             high(86400, 172800), desc="SentinelHeartbeatStale: warning after 1d, critical after 2d."),
        table("Build", f"sentinel_build_info{{{I}}}", h=4),
        row("Collectors"),
        ts("Collector success", [(f"sentinel_collector_success{{{I}}}", "{{instance}} {{collector}}")],
           thresholds=low(crit=1), minv=0, maxv=1, desc="SentinelCollectorFailing: warning after 5m at 0."),
        ts("Collector duration", [(f"sentinel_collector_duration_seconds{{{I}}}", "{{instance}} {{collector}}")], "s"),
        ts("Series dropped", [(f"sum by (instance, family) (rate(sentinel_series_dropped_total{{{I}}}[{RI}]))", "{{instance}} {{family}}")],
           "short", desc="Series over the per-family cap, per second."),
        ts("Ingest events", [(f"sum by (instance, type, result) (rate(sentinel_ingest_events_total{{{I}}}[{RI}]))", "{{instance}} {{type}} {{result}}")],
           desc="Events per second through POST /api/v1/events."),
        row("Rules and alerts"),
        ts("Rule evaluation p95", [(f"histogram_quantile(0.95, sum by (instance, le) (rate(sentinel_rule_evaluation_duration_seconds_bucket{{{I}}}[{RI}])))",
                                    "{{instance}}")], "s"),
        ts("Alerts by state", [(f"count by (alertstate, severity) (ALERTS{{{I}}})", "{{alertstate}} {{severity}}")]),
        table("Firing alerts", f'ALERTS{{alertstate="firing", {I}}}', w=24),
        row("Notifications"),
        ts("Notifications", [(f"sum by (instance, receiver, result) (rate(sentinel_notifications_total{{{I}}}[{RI}])) * 60",
                              "{{instance}} {{receiver}} {{result}}")], desc="Delivery attempts per minute."),
        ts("Failed notifications (10m)", [(f'sum by (instance, receiver) (increase(sentinel_notifications_total{{{I}, result="failed"}}[10m]))',
                                           "{{instance}} {{receiver}}")], thresholds=high(warn=1), minv=0,
           desc="SentinelNotificationsFailing: warning when any failed for 10m."),
        ts("Delivery duration p95", [(f"histogram_quantile(0.95, sum by (instance, receiver, le) (rate(sentinel_notification_duration_seconds_bucket{{{I}}}[{RI}])))",
                                      "{{instance}} {{receiver}}")], "s"),
        ts("Outbox depth", [(f"sentinel_outbox_depth{{{I}}}", "{{instance}}")]),
        row("Process"),
        ts("CPU", [(f"rate(process_cpu_seconds_total{{{I}}}[{RI}])", "{{instance}}")], "percentunit"),
        ts("Memory", [(f"process_resident_memory_bytes{{{I}}}", "{{instance}} resident")], "bytes"),
        ts("Open file descriptors", [(f"process_open_fds{{{I}}} / process_max_fds{{{I}}}", "{{instance}}")], "percentunit", minv=0),
        ts("Threads", [(f"process_threads{{{I}}}", "{{instance}}")]),
    ], [instance_var()])


def main():
    # --check: exit 1 when a committed JSON file differs from what this script writes.
    check = "--check" in sys.argv[1:]
    stale = []
    for name, build in [("overview", overview), ("system", system), ("gpu", gpu),
                        ("workflow", workflow), ("recovery", recovery), ("quality", quality),
                        ("sentinel", sentinel)]:
        path = os.path.join(HERE, f"{name}.json")
        text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        if check:
            try:
                with open(path, encoding="utf-8") as f:
                    if f.read() != text:
                        stale.append(path)
            except FileNotFoundError:
                stale.append(path)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    if stale:
        print("out of date (run python3 dashboards/build.py):", *stale, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
