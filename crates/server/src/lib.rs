//! keyward's application: the service layer shared by the HTTP API and the command line,
//! the HTTP server itself, and the background tasks that keep it honest.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
pub mod bus;
pub mod cache;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod generator;
pub mod http;
pub mod limiter;
pub mod metrics;
pub mod password;
pub mod recorder;
pub mod service;
pub mod views;
pub mod worker;

pub use app::Application;
pub use clock::Clock;
pub use config::Config;
pub use service::{Caller, Service, ServiceError};
