//! keyward's integration tests: one binary, the real server on a random port, a fresh
//! database per test. Storage tests also run on PostgreSQL when KEYWARD_TEST_POSTGRES_URL
//! is set; otherwise they say they were skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

mod helpers;

mod auth;
mod browser;
mod capabilities;
mod cli;
mod concurrency;
mod content;
mod dashboard;
mod escalation;
mod forward;
mod generation;
mod lifecycle;
mod nginx;
mod nodes;
mod ratelimit;
mod recipes;
mod redis;
mod secrets;
mod storage;
mod usage;
mod verify;
mod webdriver;
