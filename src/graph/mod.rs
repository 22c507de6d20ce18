//! Microsoft Graph: the only module that knows Graph URLs.

pub mod names;
pub mod quickxor;
