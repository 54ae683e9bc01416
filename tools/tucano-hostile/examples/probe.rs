//! Sends hostile messages to a worker's queues, for trying the worker by hand:
//!
//! - `probe AMQP_URL PREFIX NAME`: one attack of the catalogue by name (`all` for every
//!   one);
//! - `probe AMQP_URL PREFIX big N MIB`: N persistent requests of MIB mebibytes each.
#![allow(missing_docs, clippy::unwrap_used)]

use tucano_hostile::{attacks, demo_body, Attack, Properties, Publisher};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, prefix, name) = (&args[1], &args[2], args[3].as_str());
    let mut publisher = Publisher::connect(url).await.unwrap();
    let chosen: Vec<Attack> = match name {
        "big" => {
            let (count, mib): (usize, usize) = (args[4].parse().unwrap(), args[5].parse().unwrap());
            let mut body = demo_body();
            body.resize(mib << 20, b' ');
            (0..count)
                .map(|_| Attack {
                    name: "big",
                    what: "a large body",
                    once_harmful: false,
                    batch: false,
                    properties: Properties {
                        delivery_mode: Some(2),
                        ..Properties::default()
                    },
                    body: body.clone(),
                })
                .collect()
        }
        "all" => attacks(prefix, 131_072),
        name => attacks(prefix, 131_072)
            .into_iter()
            .filter(|a| a.name == name)
            .collect(),
    };
    for attack in chosen {
        let queue = if attack.batch {
            format!("{prefix}.authenticate.batch")
        } else {
            format!("{prefix}.authenticate")
        };
        let result = publisher
            .publish(queue.as_bytes(), &attack.properties, &attack.body)
            .await;
        println!("{}: {result:?}", attack.name);
    }
    publisher.close().await;
}
