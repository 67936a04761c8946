//! The admin password an admin connection pool logs in with, and a
//! generation that changes with it.
//!
//! After a rotation ([`AdminLogin::replace`]) the old password no longer
//! works, so a connection opened under an older generation is closed
//! instead of going back to the idle list; the generation is how a pool
//! tells the two apart without keeping the password per connection.

use idmint_core::Secret;
use std::sync::{Mutex, MutexGuard};

struct State {
    password: Secret<String>,
    generation: u64,
}

/// The current admin password and its generation; see the module docs.
pub struct AdminLogin {
    state: Mutex<State>,
}

impl AdminLogin {
    /// Generation 0 with `password`.
    pub fn new(password: Secret<String>) -> Self {
        Self {
            state: Mutex::new(State {
                password,
                generation: 0,
            }),
        }
    }

    /// The password to open a connection with, and the generation that
    /// connection then belongs to (read together, so they always match).
    pub fn current(&self) -> (Secret<String>, u64) {
        let state = lock(&self.state);
        (state.password.clone(), state.generation)
    }

    pub fn generation(&self) -> u64 {
        lock(&self.state).generation
    }

    /// Use `new` for every connection opened from now on; connections of
    /// earlier generations must not be reused.
    pub fn replace(&self, new: Secret<String>) {
        let mut state = lock(&self.state);
        state.password = new;
        state.generation = state.generation.wrapping_add(1);
    }
}

/// A poisoned mutex only means another task panicked while holding it;
/// the pools' data (a password, a list of idle connections) is still
/// consistent, so carry on with it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_changes_password_and_generation_together() {
        let login = AdminLogin::new(Secret::new("old".into()));
        let (password, generation) = login.current();
        assert_eq!((password.expose().as_str(), generation), ("old", 0));
        login.replace(Secret::new("new".into()));
        let (password, generation) = login.current();
        assert_eq!((password.expose().as_str(), generation), ("new", 1));
        assert_eq!(login.generation(), 1);
    }
}
