//! `notify:` in the config file: the routing tree, inhibition rules, receivers and the
//! outbox/retry settings, in Alertmanager's shape where it has one (`route`,
//! `group_by`, `matchers: ['severity="critical"']`, `continue`, `inhibit_rules` with
//! `source_matchers`/`target_matchers`/`equal`). Every field has a default; with no
//! receiver configured nothing is sent. [`NotifyConfig::validate`] reports
//! `(field path, message)`; the top level turns that into file:line:column.

use crate::dispatch::matcher;
use crate::receiver::alertmanager::AlertmanagerConfig;
use crate::receiver::email::EmailConfig;
use crate::receiver::webhook::WebhookConfig;
use crate::retry::Backoff;
use sentinel_base::config::{Dur, FieldError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// `notify:`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// The URL this sidecar is reached at: `externalURL` in webhook bodies and the link
    /// in emails. Defaults to the top-level `external_url`.
    pub external_url: String,
    /// The routing tree; its root matches every alert.
    pub route: RouteConfig,
    /// Alerts that mute others while they fire.
    pub inhibit_rules: Vec<InhibitRuleConfig>,
    /// A firing `severity="critical"` alert mutes the `severity="warning"` alert with
    /// the same alertname and otherwise equal labels (the two levels of one rule).
    pub inhibit_warning_by_critical: bool,
    /// The receivers routes name.
    pub receivers: Vec<ReceiverConfig>,
    /// Durable outbox and retries.
    pub outbox: OutboxConfig,
    /// How long fired/resolved/notified events are kept for the API.
    pub history_retention: Dur,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            external_url: String::new(),
            route: RouteConfig::default(),
            inhibit_rules: Vec::new(),
            inhibit_warning_by_critical: true,
            receivers: Vec::new(),
            outbox: OutboxConfig::default(),
            history_retention: Dur::secs(7 * 24 * 3600),
        }
    }
}

/// `route:` and every `routes[]` below it. Unset values are inherited from the parent
/// (the root's defaults: group_wait 10s, group_interval 1m, repeat_interval 4h, no
/// grouping labels).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// Receiver for alerts this route takes (inherited when unset).
    pub receiver: Option<String>,
    /// Labels that split alerts into groups; `['...']` groups by every label.
    pub group_by: Option<Vec<String>>,
    /// Alertmanager matcher strings; all must match. The root ignores them.
    pub matchers: Vec<String>,
    /// Keep looking at the following sibling routes after this one matched.
    #[serde(rename = "continue")]
    pub continue_: bool,
    /// Wait before the first notification of a new group (to gather its alerts).
    pub group_wait: Option<Dur>,
    /// Wait between notifications of a group whose alerts changed.
    pub group_interval: Option<Dur>,
    /// Resend an unchanged firing group after this long.
    pub repeat_interval: Option<Dur>,
    /// Child routes, tried in order.
    pub routes: Vec<RouteConfig>,
}

/// `inhibit_rules[]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct InhibitRuleConfig {
    /// Matchers the muting (firing) alert must satisfy.
    pub source_matchers: Vec<String>,
    /// Matchers the muted alert must satisfy.
    pub target_matchers: Vec<String>,
    /// Labels whose values must be equal on both (a missing label equals "").
    pub equal: Vec<String>,
}

/// `receivers[]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiverConfig {
    /// The name routes refer to.
    pub name: String,
    /// Signed webhooks (Alertmanager v4 body).
    pub webhooks: Vec<WebhookConfig>,
    /// Emails over SMTP.
    pub emails: Vec<EmailConfig>,
    /// Alertmanager instances to forward the alerts to (they group on their own).
    pub alertmanagers: Vec<AlertmanagerConfig>,
    /// Most notifications per minute to this receiver; 0: no limit. Over the limit a
    /// group waits and keeps gathering alerts: a storm is grouped, never dropped.
    pub max_notifications_per_minute: u32,
}

/// `outbox:`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// Persist notifications in `<data_dir>/notify.redb` before sending.
    pub enabled: bool,
    /// Attempts per notification before it becomes a dead letter.
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub initial_backoff: Dur,
    /// Longest delay between retries.
    pub max_backoff: Dur,
    /// Growth factor of the delay per retry.
    pub multiplier: f64,
    /// Randomised fraction of each delay, in [0, 1).
    pub jitter: f64,
    /// Attempts in flight at once, over all receivers.
    pub concurrency: usize,
    /// Most notifications waiting at once; beyond it the oldest become dead letters
    /// ("outbox full"), counted like any other.
    pub max_pending: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        // 2s doubling to 15m, then every 15m: 50 attempts span about 10 hours.
        OutboxConfig {
            enabled: true,
            max_attempts: 50,
            initial_backoff: Dur::secs(2),
            max_backoff: Dur::secs(15 * 60),
            multiplier: 2.0,
            jitter: 0.2,
            concurrency: 16,
            max_pending: 100_000,
        }
    }
}

impl OutboxConfig {
    pub fn backoff(&self) -> Result<Backoff, crate::retry::BackoffError> {
        Backoff::new(
            self.initial_backoff.get(),
            self.max_backoff.get(),
            self.multiplier,
            self.jitter,
        )
    }
}

type VResult = Result<(), FieldError>;

impl NotifyConfig {
    /// Errors name the full path (`notify.receivers[0].webhooks[1].url`).
    pub fn validate(&self) -> VResult {
        self.validate_inner().map_err(|e| e.within("notify"))
    }

    fn validate_inner(&self) -> VResult {
        let mut names = BTreeSet::new();
        for (i, r) in self.receivers.iter().enumerate() {
            let p = format!("receivers[{i}]");
            if r.name.is_empty() {
                return Err(FieldError::new(
                    format!("{p}.name"),
                    "a receiver needs a name",
                ));
            }
            if !names.insert(r.name.as_str()) {
                return Err(FieldError::new(
                    format!("{p}.name"),
                    format!("duplicate receiver {:?}", r.name),
                ));
            }
            for (j, w) in r.webhooks.iter().enumerate() {
                w.validate()
                    .map_err(|e| e.within(&format!("{p}.webhooks[{j}]")))?;
            }
            for (j, w) in r.emails.iter().enumerate() {
                w.validate()
                    .map_err(|e| e.within(&format!("{p}.emails[{j}]")))?;
            }
            for (j, w) in r.alertmanagers.iter().enumerate() {
                w.validate()
                    .map_err(|e| e.within(&format!("{p}.alertmanagers[{j}]")))?;
            }
        }
        if !self.receivers.is_empty() && self.route.receiver.is_none() {
            return Err(FieldError::new(
                "route.receiver",
                "the root route needs a receiver",
            ));
        }
        validate_route(&self.route, "route", &names)?;
        for (i, r) in self.inhibit_rules.iter().enumerate() {
            let p = format!("inhibit_rules[{i}]");
            matcher::parse_list(&r.source_matchers).map_err(|(j, e)| {
                FieldError::new(format!("{p}.source_matchers[{j}]"), e.to_string())
            })?;
            matcher::parse_list(&r.target_matchers).map_err(|(j, e)| {
                FieldError::new(format!("{p}.target_matchers[{j}]"), e.to_string())
            })?;
        }
        self.outbox
            .backoff()
            .map_err(|e| FieldError::new("outbox".to_string(), e.to_string()))?;
        if self.outbox.max_attempts == 0 {
            return Err(FieldError::new("outbox.max_attempts", "must be >= 1"));
        }
        if self.outbox.max_pending == 0 {
            return Err(FieldError::new("outbox.max_pending", "must be >= 1"));
        }
        if self.outbox.concurrency == 0 {
            return Err(FieldError::new("outbox.concurrency", "must be >= 1"));
        }
        if !self.external_url.is_empty() {
            url::Url::parse(&self.external_url).map_err(|e| {
                FieldError::new("external_url".to_string(), format!("invalid URL: {e}"))
            })?;
        }
        Ok(())
    }
}

impl NotifyConfig {
    /// Builds every receiver as the notifier will (HTTP clients with their CA files,
    /// signing keys, SMTP TLS parameters and credentials) and drops them again, so
    /// `check` and reload refuse a config on which `run` could not send. Errors name
    /// the receiver's path. Needs no async runtime.
    pub fn check_build(&self) -> VResult {
        use crate::receiver::{alertmanager::Alertmanager, email::Email, webhook::Webhook};
        for (ri, r) in self.receivers.iter().enumerate() {
            let p = format!("notify.receivers[{ri}]");
            for (i, w) in r.webhooks.iter().enumerate() {
                Webhook::check(w)
                    .map_err(|e| FieldError::new(format!("{p}.webhooks[{i}]"), e.to_string()))?;
            }
            for (i, w) in r.emails.iter().enumerate() {
                Email::check(w)
                    .map_err(|e| FieldError::new(format!("{p}.emails[{i}]"), e.to_string()))?;
            }
            for (i, w) in r.alertmanagers.iter().enumerate() {
                Alertmanager::new(w.clone()).map_err(|e| {
                    FieldError::new(format!("{p}.alertmanagers[{i}]"), e.to_string())
                })?;
            }
        }
        Ok(())
    }
}

fn validate_route(r: &RouteConfig, path: &str, names: &BTreeSet<&str>) -> VResult {
    if let Some(name) = &r.receiver {
        if !names.contains(name.as_str()) {
            return Err(FieldError::new(
                format!("{path}.receiver"),
                format!("receiver {name:?} is not defined in notify.receivers"),
            ));
        }
    }
    matcher::parse_list(&r.matchers)
        .map_err(|(j, e)| FieldError::new(format!("{path}.matchers[{j}]"), e.to_string()))?;
    if let Some(g) = &r.group_by {
        if g.iter().any(|l| l == "...") && g.len() > 1 {
            return Err(FieldError::new(
                format!("{path}.group_by"),
                "'...' groups by every label and cannot be combined with names",
            ));
        }
    }
    if r.group_interval.is_some_and(|d| d.get().is_zero()) {
        return Err(FieldError::new(
            format!("{path}.group_interval"),
            "must be > 0",
        ));
    }
    if r.repeat_interval.is_some_and(|d| d.get().is_zero()) {
        return Err(FieldError::new(
            format!("{path}.repeat_interval"),
            "must be > 0",
        ));
    }
    for (i, c) in r.routes.iter().enumerate() {
        validate_route(c, &format!("{path}.routes[{i}]"), names)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> NotifyConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn design_example_is_valid() {
        let c = parse(
            r#"
route:
  receiver: ops-webhook
  group_by: [alertname, severity]
  group_wait: 10s
  group_interval: 1m
  repeat_interval: 4h
  routes:
    - matchers: ['severity="critical"']
      receiver: oncall
      continue: true
inhibit_rules:
  - source_matchers: ['alertname="ComfyUIDown"']
    target_matchers: ['component="workflow"']
    equal: [instance]
receivers:
  - name: ops-webhook
    webhooks: [{ url: "https://hooks.example.com/alerts", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }]
  - name: oncall
    emails: [{ to: ["oncall@example.com"], from: "sentinel@example.com",
               smarthost: "smtp.example.com:587", auth_username: sentinel,
               auth_password: pw }]
    alertmanagers: [{ urls: ["http://alertmanager:9093"] }]
"#,
        );
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(NotifyConfig::default().validate(), Ok(()));
        // Builds every receiver (email included) without an async runtime.
        assert_eq!(c.check_build(), Ok(()));
    }

    #[test]
    fn check_build_refuses_what_the_notifier_could_not_build() {
        let c = parse(
            "route: {receiver: a}\nreceivers: [{name: a, emails: [{to: [x@y.z], from: a@b.c, smarthost: 'h:25', ca_file: /nonexistent/ca.pem}]}]",
        );
        assert_eq!(c.validate(), Ok(()));
        let FieldError { path, message: msg } = c.check_build().unwrap_err();
        assert_eq!(path, "notify.receivers[0].emails[0]");
        assert!(msg.contains("/nonexistent/ca.pem"), "{msg}");
    }

    /// One case per rejected config: (yaml, the path the error names).
    #[test]
    fn rejected_configs() {
        let cases = [
            ("route: {receiver: nope}\nreceivers: [{name: a}]", "route.receiver"),
            ("receivers: [{name: a}]", "route.receiver"),
            ("route: {receiver: a, routes: [{matchers: ['sev=~\"(\"']}]}\nreceivers: [{name: a}]", "route.routes[0].matchers[0]"),
            ("route: {receiver: a}\nreceivers: [{name: a}, {name: a}]", "receivers[1].name"),
            ("route: {receiver: a}\nreceivers: [{name: a, webhooks: [{url: 'ftp://x'}]}]", "receivers[0].webhooks[0].url"),
            ("route: {receiver: a}\nreceivers: [{name: a, webhooks: [{url: 'http://x', secret: 'whsec_!!'}]}]", "receivers[0].webhooks[0].secret"),
            ("route: {receiver: a}\nreceivers: [{name: a, emails: [{to: [], from: a@b.c, smarthost: 'h:25'}]}]", "receivers[0].emails[0].to"),
            ("route: {receiver: a}\nreceivers: [{name: a, emails: [{to: [x@y.z], from: a@b.c, smarthost: 'h'}]}]", "receivers[0].emails[0].smarthost"),
            ("route: {receiver: a}\nreceivers: [{name: a, alertmanagers: [{urls: []}]}]", "receivers[0].alertmanagers[0].urls"),
            ("inhibit_rules: [{source_matchers: ['a']}]", "inhibit_rules[0].source_matchers[0]"),
            ("outbox: {initial_backoff: 0s}", "outbox"),
            ("outbox: {jitter: 1.5}", "outbox"),
            ("outbox: {max_attempts: 0}", "outbox.max_attempts"),
            ("route: {group_by: ['...', a]}", "route.group_by"),
        ];
        for (yaml, path) in cases {
            let err = parse(yaml).validate().expect_err(yaml);
            assert_eq!(
                err.path,
                format!("notify.{path}"),
                "{yaml}: {}",
                err.message
            );
        }
        assert!(serde_yaml_ng::from_str::<NotifyConfig>("bogus: 1").is_err());
    }

    #[test]
    fn unreadable_webhook_secret_file_is_a_validation_error_at_its_key() {
        // Deserializing no longer reads the file; validate() does, and names the key.
        let c = parse(
            "route: {receiver: a}\nreceivers: [{name: a, webhooks: [{url: 'http://x', secret_file: /nonexistent/whsec}]}]",
        );
        let e = c.validate().unwrap_err();
        assert_eq!(e.path, "notify.receivers[0].webhooks[0].secret_file");
        assert!(e.message.contains("/nonexistent/whsec"), "{e}");
        let c = parse(
            "route: {receiver: a}\nreceivers: [{name: a, emails: [{to: [x@y.z], from: a@b.c, smarthost: 'h:25', auth_password_file: /dev/null}]}]",
        );
        let e = c.validate().unwrap_err();
        assert_eq!(e.path, "notify.receivers[0].emails[0].auth_password_file");
        assert!(e.message.contains("character device"), "{e}");
    }
}
