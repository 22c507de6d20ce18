//! Secret values and the stores that keep refresh tokens.
