//! `pushgate-bench`: measurements that print figures. Nothing here is a test;
//! the figures go into BENCHMARKS.md.
//!
//! # Layout
//!
//! - `dynamodb` ([`dynamodb`]): DynamoDB requests per operation, counted on
//!   the real `DynamoDbStore` against a moto server this command starts,
//!   printed beside the minimum the design allows.
//!
//! Usage: `cargo run --release -p pushgate-bench -- dynamodb`

mod dynamodb;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("dynamodb") => dynamodb::run().await,
        _ => {
            eprintln!("usage: pushgate-bench dynamodb");
            std::process::exit(2);
        }
    }
}
