//! Sends one hostile message by name: `probe AMQP_URL PREFIX NAME`.
#![allow(missing_docs)]
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, prefix, name) = (&args[1], &args[2], &args[3]);
    let attack = tucano_hostile::attacks(prefix, 131_072)
        .into_iter()
        .find(|a| a.name == name.as_str())
        .expect("known attack");
    let mut publisher = tucano_hostile::Publisher::connect(url)
        .await
        .expect("connect");
    let queue = if attack.batch {
        format!("{prefix}.authenticate.batch")
    } else {
        format!("{prefix}.authenticate")
    };
    let result = publisher
        .publish(queue.as_bytes(), &attack.properties, &attack.body)
        .await;
    println!("{name}: {result:?}");
    publisher.close().await;
}
