//! `collectors:`: the section that gathers every collector's own section (each defined
//! beside its collector), the shared `Toggle` value and the interval/timeout rules all
//! collectors follow. Built only on `sentinel_base` types, so the collectors never
//! import the binary's `config` module.

use super::{comfyui, gpu, probes, quality, system};
use sentinel_base::config::FieldError;
use sentinel_base::config::{format_duration, Dur};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `true`, `false` or `auto` (on when the hardware or library is there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Toggle {
    #[default]
    Auto,
    On,
    Off,
}

impl Serialize for Toggle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Toggle::Auto => s.serialize_str("auto"),
            Toggle::On => s.serialize_bool(true),
            Toggle::Off => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for Toggle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            B(bool),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::B(true) => Ok(Toggle::On),
            Raw::B(false) => Ok(Toggle::Off),
            Raw::S(s) if s == "auto" => Ok(Toggle::Auto),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "expected true, false or \"auto\", got {s:?}"
            ))),
        }
    }
}

/// The `collectors:` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorsConfig {
    /// Host metrics with node_exporter's names (`system/`).
    pub system: system::SystemConfig,
    /// NVIDIA GPUs through NVML (`gpu/`).
    pub gpu: gpu::GpuConfig,
    /// Image checks on ComfyUI outputs (`quality/`).
    pub quality: quality::QualityConfig,
    /// Reachability of HTTP(S)/TCP dependencies (`probes/`).
    pub probes: probes::ProbesConfig,
    /// The ComfyUI server's queue, history and resources (`comfyui/`).
    pub comfyui: comfyui::ComfyuiConfig,
}

impl CollectorsConfig {
    pub fn validate(&self) -> Result<(), FieldError> {
        self.system
            .validate()
            .map_err(|e| e.within("collectors.system"))?;
        self.gpu
            .validate()
            .map_err(|e| e.within("collectors.gpu"))?;
        self.quality
            .validate()
            .map_err(|e| e.within("collectors.quality"))?;
        self.probes
            .validate()
            .map_err(|e| e.within("collectors.probes"))?;
        self.comfyui
            .validate()
            .map_err(|e| e.within("collectors.comfyui"))?;
        Ok(())
    }

    /// Writes every unset timeout as its effective value (`check --print` shows it).
    pub fn resolve_timeouts(&mut self) {
        self.system.timeout = Some(Dur(self.system.timeout()));
        self.gpu.timeout = Some(Dur(self.gpu.timeout()));
        self.quality.timeout = Some(Dur(self.quality.timeout()));
        self.quality.fetch_timeout = Some(Dur(self.quality.fetch_timeout()));
        self.probes.timeout = Some(Dur(self.probes.timeout()));
        self.comfyui.timeout = Some(Dur(self.comfyui.timeout()));
    }
}

/// The timeout of a run: the explicit one, or else `min(default, interval)`, as
/// Prometheus derives `scrape_timeout`, so a short interval never needs a timeout too.
pub fn resolve_timeout(explicit: Option<Dur>, default: Duration, interval: Duration) -> Duration {
    explicit
        .map(Dur::get)
        .unwrap_or_else(|| default.min(interval))
}

/// Checks an interval/timeout pair; shared by every collector's `validate`. Only an
/// explicit timeout can be wrong: an unset one is `min(default, interval)`.
pub fn validate_schedule(
    interval: Duration,
    timeout: Option<Dur>,
    default: Duration,
) -> Result<(), FieldError> {
    if interval < Duration::from_millis(100) {
        return Err(FieldError::new("interval", "must be at least 100ms"));
    }
    if let Some(t) = timeout {
        if t.get().is_zero() || t.get() > interval {
            return Err(FieldError::new(
                "timeout",
                format!(
                    "must be more than 0s and at most the interval ({}); unset, it is the \
                     shorter of {} and the interval",
                    format_duration(interval),
                    format_duration(default),
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `collectors.<kind>` from YAML, validates it and returns its resolved timeout.
    fn schedule_of(kind: &str, body: &str) -> Result<Duration, FieldError> {
        let yaml = format!("{kind}: {{ {body} }}");
        let mut c: CollectorsConfig = serde_yaml_ng::from_str(&yaml).expect("parses");
        c.validate()?;
        c.resolve_timeouts();
        c.validate().expect("resolved timeouts stay valid");
        Ok(match kind {
            "system" => c.system.timeout(),
            "gpu" => c.gpu.timeout(),
            "quality" => c.quality.timeout(),
            "probes" => c.probes.timeout(),
            "comfyui" => c.comfyui.timeout(),
            _ => unreachable!(),
        })
    }

    const KINDS: [(&str, u64); 5] = [
        ("system", 4),
        ("gpu", 4),
        ("quality", 9),
        ("probes", 10),
        ("comfyui", 2),
    ];

    #[test]
    fn a_short_interval_without_a_timeout_is_accepted_for_every_collector() {
        for (kind, _) in KINDS {
            assert_eq!(
                schedule_of(kind, "interval: 1s"),
                Ok(Duration::from_secs(1)),
                "{kind}: unset timeout must be min(default, interval)"
            );
            assert_eq!(
                schedule_of(kind, "interval: 100ms"),
                Ok(Duration::from_millis(100)),
                "{kind}"
            );
        }
    }

    #[test]
    fn an_unset_timeout_keeps_its_default_under_a_long_interval() {
        for (kind, default) in KINDS {
            assert_eq!(
                schedule_of(kind, "interval: 1m"),
                Ok(Duration::from_secs(default)),
                "{kind}"
            );
        }
    }

    #[test]
    fn an_explicit_timeout_longer_than_the_interval_is_still_a_located_error() {
        for (kind, _) in KINDS {
            let err = schedule_of(kind, "interval: 1s, timeout: 2s").unwrap_err();
            assert_eq!(err.path, format!("collectors.{kind}.timeout"), "{kind}");
            assert!(
                err.message.contains("at most the interval (1s)"),
                "{kind}: {}",
                err.message
            );
            assert_eq!(
                schedule_of(kind, "interval: 2s, timeout: 1500ms"),
                Ok(Duration::from_millis(1500)),
                "{kind}"
            );
        }
    }

    #[test]
    fn quality_fetch_timeout_follows_a_short_run_timeout() {
        let mut c: CollectorsConfig = serde_yaml_ng::from_str("quality: { interval: 1s }").unwrap();
        c.validate().unwrap();
        assert_eq!(c.quality.fetch_timeout(), Duration::from_secs(1));
        c.resolve_timeouts();
        assert_eq!(c.quality.fetch_timeout, Some(Dur::secs(1)));
        let c: CollectorsConfig =
            serde_yaml_ng::from_str("quality: { interval: 10s, timeout: 2s, fetch_timeout: 3s }")
                .unwrap();
        assert_eq!(
            c.validate().unwrap_err().path,
            "collectors.quality.fetch_timeout"
        );
    }

    #[test]
    fn probe_targets_default_inside_a_short_derived_run_timeout() {
        let mut c: CollectorsConfig = serde_yaml_ng::from_str(
            "probes: { interval: 1s, targets: [{ name: a, tcp: '127.0.0.1:1' }] }",
        )
        .unwrap();
        c.validate().unwrap();
        c.resolve_timeouts();
        assert_eq!(c.probes.timeout, Some(Dur::secs(1)));
    }
}
