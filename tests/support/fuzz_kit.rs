//! What every fuzz target shares (the binary crate's and the library crates'): the case
//! budget from `PROPTEST_CASES`, and byte mutations of seed files. Included with
//! `#[path]` so that each test crate compiles its own copy.
#![allow(dead_code)]

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

/// Cases per target: `PROPTEST_CASES`, or the target's own default.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default),
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

/// One edit of a seed; positions are taken modulo the current length.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(usize, u8),
    Insert(usize, &'static str),
    Delete(usize, usize),
    Duplicate(usize, usize, usize),
    Truncate(usize),
}

/// Edits that favour inserting `tokens`, the ones the parser under test treats specially.
pub fn mutation(tokens: &'static [&'static str]) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Flip(p, b)),
        2 => (any::<usize>(), prop::sample::select(tokens)).prop_map(|(p, t)| Mutation::Insert(p, t)),
        1 => (any::<usize>(), 1usize..16).prop_map(|(p, n)| Mutation::Delete(p, n)),
        1 => (any::<usize>(), 1usize..64, any::<usize>())
            .prop_map(|(p, n, at)| Mutation::Duplicate(p, n, at)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

pub fn mutate(seed: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for m in muts {
        let len = b.len().max(1);
        match *m {
            Mutation::Flip(p, x) => {
                if !b.is_empty() {
                    b[p % len] = x;
                }
            }
            Mutation::Insert(p, t) => {
                let at = p % (b.len() + 1);
                b.splice(at..at, t.bytes());
            }
            Mutation::Delete(p, n) => {
                let at = p % len;
                let end = (at + n).min(b.len());
                if at < end {
                    b.drain(at..end);
                }
            }
            Mutation::Duplicate(p, n, to) => {
                let at = p % len;
                let end = (at + n).min(b.len());
                if at < end {
                    let chunk = b[at..end].to_vec();
                    let to = to % (b.len() + 1);
                    b.splice(to..to, chunk);
                }
            }
            Mutation::Truncate(p) => b.truncate(p % (b.len() + 1)),
        }
    }
    b
}
