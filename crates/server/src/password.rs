//! Password hashing with argon2id, off the async threads.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use secrecy::{ExposeSecret, SecretString};

/// Shortest password accepted.
pub const MIN_LEN: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password must be at least {MIN_LEN} characters long")]
    TooShort,
    #[error("the password must be at most 1024 characters long")]
    TooLong,
    #[error("password hashing failed")]
    Hashing,
}

pub fn check_strength(password: &SecretString) -> Result<(), PasswordError> {
    let n = password.expose_secret().chars().count();
    if n < MIN_LEN {
        Err(PasswordError::TooShort)
    } else if n > 1024 {
        Err(PasswordError::TooLong)
    } else {
        Ok(())
    }
}

/// Hashes a password into a PHC string (argon2id, default parameters).
pub async fn hash(password: SecretString) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|_| PasswordError::Hashing)
    })
    .await
    .map_err(|_| PasswordError::Hashing)?
}

/// Checks a password against a stored hash. With no stored hash it checks against a dummy
/// one, so the time taken does not tell whether the account exists.
pub async fn verify(password: SecretString, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0nGO3kV1vD0Jm0QWQ4p0nXbq3wZQm8h2V8b3P3eXq6g";
        let (phc, real) = match &stored {
            Some(s) => (s.as_str(), true),
            None => (DUMMY, false),
        };
        let Ok(parsed) = PasswordHash::new(phc) else { return false };
        let ok = Argon2::default().verify_password(password.expose_secret().as_bytes(), &parsed).is_ok();
        ok && real
    })
    .await
    .unwrap_or(false)
}
