//! OpenCode identifiers (`ses_`, `msg_`, `prt_`): 12 hex digits of time and counter, then 14 base62 characters.

use rand::Rng;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const LOW_48_BITS: u64 = (1 << 48) - 1;

/// Mirrors `src/id/id.ts`: one `(last timestamp, counter)` pair shared by every prefix.
///
/// The generator's clock only moves forward, and a timestamp earlier than the last one is treated as
/// the last one, so the 48-bit time/counter field never repeats: uniqueness does not rest on the random
/// suffix alone.
#[derive(Debug, Default)]
pub(crate) struct IdGenerator {
    last_ms: i64,
    counter: u64,
}

impl IdGenerator {
    /// An ascending id (`msg_`, `prt_`) created at `now_ms`.
    pub(crate) fn ascending(&mut self, prefix: &str, now_ms: i64, rng: &mut impl Rng) -> String {
        self.create(prefix, now_ms, false, rng)
    }

    /// A descending id (`ses_`): the time/counter field is bit-inverted so newer sorts first.
    pub(crate) fn descending(&mut self, prefix: &str, now_ms: i64, rng: &mut impl Rng) -> String {
        self.create(prefix, now_ms, true, rng)
    }

    fn create(&mut self, prefix: &str, now_ms: i64, descending: bool, rng: &mut impl Rng) -> String {
        let now_ms = now_ms.max(self.last_ms);
        if now_ms != self.last_ms {
            self.last_ms = now_ms;
            self.counter = 0;
        }
        self.counter += 1;
        // opencode would let the counter spill into the timestamp; keeping it below 4096 keeps the
        // field strictly increasing instead.
        if self.counter >= 0x1000 {
            self.last_ms += 1;
            self.counter = 1;
        }
        let mut value = (self.last_ms as u64).wrapping_mul(0x1000).wrapping_add(self.counter);
        if descending {
            value = !value;
        }
        value &= LOW_48_BITS;
        let mut id = String::with_capacity(prefix.len() + 27);
        id.push_str(prefix);
        id.push('_');
        id.push_str(&format!("{value:012x}"));
        for _ in 0..14 {
            id.push(BASE62[rng.gen_range(0..BASE62.len())] as char);
        }
        id
    }
}

/// True when `id` is `<prefix>_` followed by 12 lowercase hex digits and 14 base62 characters.
#[cfg(test)]
pub(crate) fn is_well_formed(id: &str, prefix: &str) -> bool {
    let Some(rest) = id.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('_')) else {
        return false;
    };
    rest.len() == 26
        && rest[..12].bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
        && rest[12..].bytes().all(|byte| byte.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn ids_match_opencode_layout_and_order() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut ids = IdGenerator::default();
        // The fixture pair msg_2018b5985001… / ses_dfe74a67affe… come from the same clock reading.
        let message = ids.ascending("msg", 0x2018b5985, &mut rng);
        assert!(message.starts_with("msg_2018b5985001"), "{message}");
        let part = ids.ascending("prt", 0x2018b5985, &mut rng);
        assert!(part.starts_with("prt_2018b5985002"), "{part}");
        let session = ids.descending("ses", 0x2018b5986, &mut rng);
        assert!(session.starts_with("ses_dfe74a679ffe"), "{session}");
        assert!(is_well_formed(&message, "msg") && is_well_formed(&part, "prt") && is_well_formed(&session, "ses"));
        assert!(message[4..16] < part[4..16]);
        let later = ids.descending("ses", 0x2018b6000, &mut rng);
        assert!(later[4..16] < session[4..16], "sessions sort newest first");
    }
}
