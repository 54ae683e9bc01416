//! [`Current`]: a value the hot path reads on every request and a reload replaces
//! whole (the signing keys, the CRM login-token keys).
//!
//! A reader takes the lock only long enough to clone an `Arc`, so a reload never
//! waits for a request and a request never sees half of a reload.

use std::sync::{Arc, RwLock};

/// A shared, replaceable value; clones share it.
pub struct Current<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Current<T> {
    fn clone(&self) -> Self {
        Current(self.0.clone())
    }
}

impl<T> Current<T> {
    /// Holds `value`.
    pub fn new(value: T) -> Current<T> {
        Current(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The value now. Those who hold it keep it through a later [`Current::set`].
    pub fn get(&self) -> Arc<T> {
        // The lock is held only to clone or swap an `Arc`, which cannot panic, so a
        // poisoned lock still holds a whole value.
        match self.0.read() {
            Ok(value) => value.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the value for every later [`Current::get`].
    pub fn set(&self, value: T) {
        let value = Arc::new(value);
        match self.0.write() {
            Ok(mut held) => *held = value,
            Err(poisoned) => *poisoned.into_inner() = value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_keeps_its_value_and_later_readers_see_the_new_one() {
        let current = Current::new(1);
        let shared = current.clone();
        let before = current.get();
        shared.set(2);
        assert_eq!((*before, *current.get()), (1, 2));
    }
}
