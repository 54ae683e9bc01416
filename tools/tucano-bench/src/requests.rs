//! The requests the load generator sends: a weighted mix of identifier paths, each
//! naming a random entity of the whole data set that authenticates, so every reply of
//! a correct worker is `OK`.

use crate::dataset::{entity_id, Dataset, PASS_CODE, SESSION_TOKEN, SUBSCRIPTION};

/// An identifier path (`docs/protocol.md` section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// `subscription_identifier.number`.
    SubscriptionNumber,
    /// `subscription_identifier.id`.
    SubscriptionId,
    /// `installed_item_identifier.serial_number`.
    ItemSerial,
    /// `access_token_identifier.authentication_code`.
    TokenCode,
    /// `customer_identification_medium_identifier.authentication_code`.
    MediumCode,
    /// `access_token_identifier.identifier` + `pass_code` (Argon2).
    TokenPassCode,
    /// `customer_identification_medium_identifier.identifier` + `pass_code` (Argon2).
    MediumPassCode,
}

impl Path {
    /// Every path, in the order of the report.
    pub const ALL: [Path; 7] = [
        Path::SubscriptionNumber,
        Path::SubscriptionId,
        Path::ItemSerial,
        Path::TokenCode,
        Path::MediumCode,
        Path::TokenPassCode,
        Path::MediumPassCode,
    ];

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Path::SubscriptionNumber => "subscription by number",
            Path::SubscriptionId => "subscription by id",
            Path::ItemSerial => "installed item by serial number",
            Path::TokenCode => "access token by authentication code",
            Path::MediumCode => "medium by authentication code",
            Path::TokenPassCode => "access token by identifier + pass code",
            Path::MediumPassCode => "medium by identifier + pass code",
        }
    }

    /// Its index in [`Path::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A small, fast pseudo-random generator (SplitMix64); each load task owns one.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `1..=max` (`max` at least 1).
    pub fn one_to(&mut self, max: u64) -> u64 {
        1 + ((u128::from(self.next()) * u128::from(max.max(1))) >> 64) as u64
    }
}

/// Builds request bodies for one data set and mix.
#[derive(Debug, Clone)]
pub struct Generator {
    dataset: Dataset,
    /// Cumulative weights of [`Path::ALL`], in hundredths of a percent.
    cumulative: [u32; 7],
}

impl Generator {
    /// The default mix with `pass_code_percent` % of requests (split evenly between
    /// access tokens and mediums) checking an Argon2 pass code: subscription by number
    /// 25 %, by id 15 %, installed item 20 %, access token 20 %, medium the rest.
    pub fn new(dataset: Dataset, pass_code_percent: f64) -> Generator {
        let pass = (pass_code_percent.clamp(0.0, 20.0) * 100.0).round() as u32;
        Generator::weighted(
            dataset,
            [
                2500,
                1500,
                2000,
                2000 - pass / 2,
                2000 - (pass - pass / 2),
                pass / 2,
                pass - pass / 2,
            ],
        )
    }

    /// Only requests that need a pass code, half naming an access token, half a medium.
    pub fn pass_codes_only(dataset: Dataset) -> Generator {
        Generator::weighted(dataset, [0, 0, 0, 0, 0, 1, 1])
    }

    /// A mix of [`Path::ALL`] with these weights (not all zero).
    fn weighted(dataset: Dataset, weights: [u32; 7]) -> Generator {
        let mut cumulative = [0; 7];
        let mut sum = 0;
        for (slot, weight) in cumulative.iter_mut().zip(weights) {
            sum += weight;
            *slot = sum;
        }
        Generator {
            dataset,
            cumulative,
        }
    }

    /// A random path of the mix.
    pub fn path(&self, rng: &mut Rng) -> Path {
        let total = self.cumulative[6];
        let draw = (rng.next() % u64::from(total)) as u32;
        let index = self
            .cumulative
            .iter()
            .position(|&bound| draw < bound)
            .unwrap_or(0);
        Path::ALL[index]
    }

    /// A request body on `path` naming a random entity that authenticates.
    pub fn body(&self, path: Path, rng: &mut Rng) -> String {
        let data = &self.dataset;
        let token = SESSION_TOKEN;
        match path {
            Path::SubscriptionNumber => {
                let i = pick(rng, data.subscriptions, |i| data.subscription_ok(i));
                format!(
                    r#"{{"token":"{token}","subscription_identifier":{{"number":"S{i:010}"}}}}"#
                )
            }
            Path::SubscriptionId => {
                let i = pick(rng, data.subscriptions, |i| data.subscription_ok(i));
                let id = entity_id(SUBSCRIPTION, i)
                    .simple()
                    .to_string()
                    .to_uppercase();
                format!(r#"{{"token":"{token}","subscription_identifier":{{"id":"{id}"}}}}"#)
            }
            Path::ItemSerial => {
                let i = pick(rng, data.subscriptions, |i| data.item_ok(i));
                format!(
                    r#"{{"token":"{token}","installed_item_identifier":{{"serial_number":"SN{i:010}"}}}}"#
                )
            }
            Path::TokenCode => {
                let j = pick(rng, data.accounts, |j| data.token_ok(j));
                let credential = format!(r#"{{"authentication_code":"AC{j:010}"}}"#);
                token_request(token, &credential, data.token_type(j))
            }
            Path::MediumCode => {
                let j = pick(rng, data.accounts, |j| data.medium_ok(j));
                format!(
                    r#"{{"token":"{token}","customer_identification_medium_identifier":{{"authentication_code":"CIM{j:010}"}}}}"#
                )
            }
            Path::TokenPassCode => {
                let j = 10 * pick(rng, data.accounts / 10, |k| data.token_ok(10 * k));
                let credential =
                    format!(r#"{{"identifier":"user-{j:010}","pass_code":"{PASS_CODE}"}}"#);
                token_request(token, &credential, data.token_type(j))
            }
            Path::MediumPassCode => {
                let j = 10 * pick(rng, data.accounts / 10, |k| data.medium_ok(10 * k));
                format!(
                    r#"{{"token":"{token}","customer_identification_medium_identifier":{{"identifier":"card-{j:010}","pass_code":"{PASS_CODE}"}}}}"#
                )
            }
        }
    }
}

fn token_request(token: &str, credential: &str, kind: Option<&str>) -> String {
    match kind {
        Some(name) => format!(
            r#"{{"token":"{token}","access_token_identifier":{credential},"subscription_type_identifier":{{"name":"{name}"}}}}"#
        ),
        None => format!(r#"{{"token":"{token}","access_token_identifier":{credential}}}"#),
    }
}

/// A uniformly random ordinal in `1..=max` for which `good` holds (rejection sampling;
/// most ordinals are good, so this takes one or two draws).
fn pick(rng: &mut Rng, max: u64, good: impl Fn(u64) -> bool) -> u64 {
    let mut candidate = rng.one_to(max);
    for _ in 0..1000 {
        if good(candidate) {
            return candidate;
        }
        candidate = rng.one_to(max);
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_follows_its_weights() {
        let generator = Generator::new(Dataset::new(10_000), 1.0);
        let mut rng = Rng::new(7);
        let mut counts = [0u32; 7];
        for _ in 0..100_000 {
            counts[generator.path(&mut rng).index()] += 1;
        }
        assert!((24_000..26_000).contains(&counts[0]), "{counts:?}");
        assert!((300..700).contains(&counts[5]), "{counts:?}");
    }

    #[test]
    fn the_pass_code_mix_has_only_pass_codes() {
        let generator = Generator::pass_codes_only(Dataset::new(10_000));
        let mut rng = Rng::new(3);
        let paths: Vec<Path> = (0..1000).map(|_| generator.path(&mut rng)).collect();
        assert!(paths
            .iter()
            .all(|p| matches!(p, Path::TokenPassCode | Path::MediumPassCode)));
        assert!(paths.contains(&Path::TokenPassCode) && paths.contains(&Path::MediumPassCode));
    }

    #[test]
    fn bodies_are_json_objects() {
        let generator = Generator::new(Dataset::new(10_000), 1.0);
        let mut rng = Rng::new(1);
        for path in Path::ALL {
            for _ in 0..100 {
                let body = generator.body(path, &mut rng);
                let value: serde_json::Value =
                    serde_json::from_str(&body).expect("a request body is JSON");
                assert!(value.is_object());
            }
        }
    }
}
