//! Key-value stores and caches: Redis (`redis`, RESP2 and RESP3) and Memcached (`memcached`,
//! the text protocol). Their operations are database client (or server) operations
//! (`Family::Db`, `db.system.name` `redis` or `memcached`).
pub mod memcached;
pub mod redis;

use crate::decode::Role;
use crate::events::SockData;

/// For protocols answered in order: a read on the client side while nothing is asked is an
/// answer that came before the event of its question's write (held, see `decode::reorder`).
pub(crate) fn answer_too_early(role: Option<Role>, nothing_asked: bool, ev: &SockData) -> bool {
    role == Some(Role::Client) && nothing_asked && !ev.data.is_empty()
}

/// The held answers are taken once something is asked.
pub(crate) fn takes_held_answers(role: Option<Role>, nothing_asked: bool) -> bool {
    role != Some(Role::Client) || !nothing_asked
}

/// The text of `name` as an operation name: ASCII upper case, or `None` if it is not a word
/// (letters, digits, `_`, `-`, `.`, `|`: what command names are made of).
pub(crate) fn command_name(name: &[u8]) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'|'));
    ok.then(|| String::from_utf8_lossy(name).to_ascii_uppercase())
}
