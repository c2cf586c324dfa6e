//! Notifications: routing, grouping, inhibition and silences (`dispatch`), the durable
//! outbox (`outbox`), retry classification and backoff (`retry`), the pipeline that
//! drives attempts over the outbox (`notifier`'s delivery loop), and one module per receiver
//! (`receiver::{webhook, email, alertmanager}`), with the webhook body and its
//! Standard Webhooks signature (`webhook::payload`, `sign`). The rule engine feeds
//! alerts in through [`sentinel_base::alert::AlertSink`]; the HTTP layer reads state.

#![forbid(unsafe_code)]

pub mod config;
pub mod dispatch;
pub mod metrics;
pub mod notification;
pub mod notifier;
pub mod outbox;
pub mod receiver;
pub mod retry;
pub mod sign;
pub mod verify;
pub mod webhook;

pub use config::NotifyConfig;
pub use notifier::{BuildError, NotPersisting, Notifier};
