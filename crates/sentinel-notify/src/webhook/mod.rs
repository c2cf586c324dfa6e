//! The webhook body (Alertmanager payload v4). The receiver that POSTs it lives in
//! `receiver::webhook`; signing in `sign`.

pub mod payload;
