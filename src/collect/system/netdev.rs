//! `node_network_{receive,transmit}_*_total{device}` from `/proc/net/dev`, with the
//! names node_exporter 1.5 gives them (its "legacy" names, which its netlink path maps
//! back to as well): `receive_{bytes,packets,errs,drop,fifo,frame,compressed,multicast}`
//! and `transmit_{bytes,packets,errs,drop,fifo,colls,carrier,compressed}`. The file is
//! parsed by `procfs`'s `InterfaceDeviceStatus`. The device filter is applied here:
//! `device_exclude` (default: container and bridge interfaces) or `device_include`.

use super::ParseError;
use crate::metrics::MetricFamily;
use procfs::net::{DeviceStatus, InterfaceDeviceStatus};
use procfs::FromBufRead;
use regex::Regex;

/// Most interfaces we report; a host with more is dropping the excess, with a warning.
const MAX_DEVICES: usize = 4096;

/// The interfaces in the file, sorted by name.
pub fn parse_net_dev(text: &str) -> Result<Vec<DeviceStatus>, ParseError> {
    let parsed = InterfaceDeviceStatus::from_buf_read(text.as_bytes())
        .map_err(|e| ParseError::Procfs(e.to_string()))?;
    let mut devices: Vec<DeviceStatus> = parsed.0.into_values().collect();
    devices.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(devices)
}

type Field = (&'static str, fn(&DeviceStatus) -> u64);

/// The 16 columns, in the order of the file.
const FIELDS: [Field; 16] = [
    ("receive_bytes", |d| d.recv_bytes),
    ("receive_packets", |d| d.recv_packets),
    ("receive_errs", |d| d.recv_errs),
    ("receive_drop", |d| d.recv_drop),
    ("receive_fifo", |d| d.recv_fifo),
    ("receive_frame", |d| d.recv_frame),
    ("receive_compressed", |d| d.recv_compressed),
    ("receive_multicast", |d| d.recv_multicast),
    ("transmit_bytes", |d| d.sent_bytes),
    ("transmit_packets", |d| d.sent_packets),
    ("transmit_errs", |d| d.sent_errs),
    ("transmit_drop", |d| d.sent_drop),
    ("transmit_fifo", |d| d.sent_fifo),
    ("transmit_colls", |d| d.sent_colls),
    ("transmit_carrier", |d| d.sent_carrier),
    ("transmit_compressed", |d| d.sent_compressed),
];

/// node_exporter's device filter: excluded if `exclude` matches, or if `include` is
/// set and does not match.
pub fn ignored(name: &str, exclude: Option<&Regex>, include: Option<&Regex>) -> bool {
    exclude.is_some_and(|r| r.is_match(name)) || include.is_some_and(|r| !r.is_match(name))
}

pub fn families(
    devices: &[DeviceStatus],
    exclude: Option<&Regex>,
    include: Option<&Regex>,
) -> Vec<MetricFamily> {
    let kept: Vec<&DeviceStatus> = devices
        .iter()
        .filter(|d| !ignored(&d.name, exclude, include))
        .collect();
    if kept.len() > MAX_DEVICES {
        tracing::warn!(
            devices = kept.len(),
            kept = MAX_DEVICES,
            "too many network devices; set collectors.system.netdev.device_exclude"
        );
    }
    FIELDS
        .iter()
        .map(|(key, get)| {
            let mut f = MetricFamily::counter(
                format!("node_network_{key}_total"),
                format!("Network device statistic {key}."),
            );
            for d in kept.iter().take(MAX_DEVICES) {
                f.push(&[("device", d.name.as_str())], get(d) as f64);
            }
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  123456     789    0    0    0     0          0         0   123456     789    0    0    0     0       0          0
  eth0: 191547041  140000    1    2    3     4          5         6 9876543    70000    7    8    9    10      11         12
veth1a2b:     100       1    0    0    0     0          0         0      200        2    0    0    0     0       0          0
";

    #[test]
    fn every_column_under_node_exporter_names() {
        let d = parse_net_dev(NET_DEV).unwrap();
        assert_eq!(
            d.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["eth0", "lo", "veth1a2b"]
        );
        let ex = Regex::new(super::super::DEFAULT_NETDEV_DEVICE_EXCLUDE).unwrap();
        let f = families(&d, Some(&ex), None);
        assert_eq!(f.len(), 16);
        let value = |name: &str, dev: &str| {
            f.iter()
                .find(|f| f.name == name)
                .and_then(|f| f.samples.iter().find(|s| s.labels[0].1 == dev))
                .map(|s| s.value)
        };
        assert_eq!(
            value("node_network_receive_bytes_total", "eth0"),
            Some(191_547_041.0)
        );
        assert_eq!(
            value("node_network_receive_multicast_total", "eth0"),
            Some(6.0)
        );
        assert_eq!(
            value("node_network_transmit_colls_total", "eth0"),
            Some(10.0)
        );
        assert_eq!(
            value("node_network_transmit_compressed_total", "eth0"),
            Some(12.0)
        );
        assert_eq!(value("node_network_receive_bytes_total", "veth1a2b"), None);
        assert_eq!(
            value("node_network_receive_bytes_total", "lo"),
            Some(123_456.0)
        );
    }

    #[test]
    fn include_keeps_only_matches() {
        let d = parse_net_dev(NET_DEV).unwrap();
        let inc = Regex::new("^eth").unwrap();
        let f = families(&d, None, Some(&inc));
        assert_eq!(f[0].samples.len(), 1);
        assert!(parse_net_dev("h1\nh2\n  eth0: 1 2 3\n").is_err());
    }
}
