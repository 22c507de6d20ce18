//! OAuth 2.0 login and access-token refresh.
