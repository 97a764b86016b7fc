//! Short header values written into a buffer of the thread's and handed out as shared slices
//! of it, instead of one allocation each.
//!
//! Only for values that live no longer than an answer's head: hyper lets them go once it has
//! written the head, so when the buffer is used up it is usually free to be written again
//! from the start, and only while an answer still holds a piece of it is a new one allocated.
//! A value kept for longer (a request's id, kept while the request runs) would keep the whole
//! buffer alive and must not come from here.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

/// How much each buffer holds: the values of some hundreds of answers.
const SIZE: usize = 16 * 1024;

/// `value`, copied into the thread's buffer.
pub fn copy(value: &[u8]) -> Bytes {
    thread_local! {
        static BUFFER: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    }
    if value.len() > SIZE / 4 {
        // Not worth a piece of the buffer, which would grow to hold it and stay that size.
        return Bytes::copy_from_slice(value);
    }
    // Its own allocation also while the thread is being torn down, when its buffer is gone.
    BUFFER
        .try_with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut buffer) => copy_into(&mut buffer, value),
            Err(_) => Bytes::copy_from_slice(value),
        })
        .unwrap_or_else(|_| Bytes::copy_from_slice(value))
}

fn copy_into(buffer: &mut BytesMut, value: &[u8]) -> Bytes {
    if buffer.capacity() < value.len() {
        buffer.reserve(SIZE);
    }
    buffer.extend_from_slice(value);
    buffer.split().freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_written_past_the_buffers_end_are_whole_and_unchanged() {
        // Enough values to use the buffer up several times over, half of them still held (so
        // that it cannot always start again), compared at the end.
        let mut held = Vec::new();
        for i in 0..3 * SIZE / 8 {
            let text = format!("value {i}");
            let value = copy(text.as_bytes());
            if i % 2 == 0 {
                held.push((text, value));
            }
        }
        for (text, value) in held {
            assert_eq!(value, text.as_bytes());
        }
    }

    #[test]
    fn a_value_longer_than_the_buffer_is_kept_whole() {
        let long = vec![b'x'; 3 * SIZE];
        assert_eq!(copy(&long), long);
    }
}
