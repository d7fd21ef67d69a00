//! The time packets spend inside a Switchyard SFU, read from its own histogram
//! `switchyard_sfu_rtp_delay_seconds` at both edges of the window. The SFU measures from the
//! kernel's receive timestamp of each RTP datagram until every copy made from it has been sent,
//! so the figure leaves out both client stacks, which the end-to-end latency includes.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Name of the bucket series in the metrics text.
const BUCKET_SERIES: &str = "switchyard_sfu_rtp_delay_seconds_bucket{le=\"";

/// Bound on one scrape of `/metrics`.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Cumulative bucket counts: upper bound in seconds (infinity for `+Inf`) and count.
pub type Buckets = Vec<(f64, u64)>;

/// Quantiles of the delay within the window. Each is the upper bound of the bucket that contains
/// it, so the true value is at most this. `None` means it is above the largest finite bound.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SfuDelay {
    /// RTP packets measured in the window.
    pub packets: u64,
    pub p50_us_at_most: Option<f64>,
    pub p99_us_at_most: Option<f64>,
}

/// Reads the delay histogram from the server's `/metrics` at `http`.
pub async fn scrape(http: SocketAddr) -> anyhow::Result<Buckets> {
    let text = tokio::time::timeout(SCRAPE_TIMEOUT, get_metrics(http))
        .await
        .context("timed out reading /metrics")??;
    let buckets = parse(&text);
    if buckets.is_empty() {
        bail!("/metrics at {http} has no switchyard_sfu_rtp_delay_seconds histogram");
    }
    Ok(buckets)
}

async fn get_metrics(http: SocketAddr) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(http)
        .await
        .with_context(|| format!("connecting to {http} for /metrics"))?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => bail!(
            "GET /metrics at {http} failed: {}",
            response.lines().next().unwrap_or("empty response")
        ),
    }
}

/// Picks the delay buckets out of Prometheus text.
fn parse(text: &str) -> Buckets {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(BUCKET_SERIES)?;
            let (bound, rest) = rest.split_once("\"} ")?;
            let bound = match bound {
                "+Inf" => f64::INFINITY,
                bound => bound.parse().ok()?,
            };
            Some((bound, rest.trim().parse().ok()?))
        })
        .collect()
}

/// Quantiles of the observations made between the two scrapes.
pub fn window(start: &Buckets, end: &Buckets) -> SfuDelay {
    let counts: Buckets = end
        .iter()
        .map(|&(bound, count)| {
            let before = start
                .iter()
                .find(|(other, _)| *other == bound)
                .map_or(0, |&(_, count)| count);
            (bound, count.saturating_sub(before))
        })
        .collect();
    let packets = counts.last().map_or(0, |&(_, count)| count);
    let quantile = |q: f64| {
        let rank = (q * packets as f64).ceil() as u64;
        let bound = counts
            .iter()
            .find(|&&(_, count)| packets > 0 && count >= rank.max(1))?
            .0;
        bound.is_finite().then_some(bound * 1e6)
    };
    SfuDelay {
        packets,
        p50_us_at_most: quantile(0.5),
        p99_us_at_most: quantile(0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE switchyard_sfu_rtp_delay_seconds histogram
switchyard_sfu_rtp_delay_seconds_bucket{le=\"0.0001\"} 10
switchyard_sfu_rtp_delay_seconds_bucket{le=\"0.001\"} 98
switchyard_sfu_rtp_delay_seconds_bucket{le=\"+Inf\"} 100
switchyard_sfu_rtp_delay_seconds_sum 0.01
switchyard_sfu_rtp_delay_seconds_count 100
";

    #[test]
    fn parse_reads_every_bucket() {
        assert_eq!(
            parse(TEXT),
            vec![(0.0001, 10), (0.001, 98), (f64::INFINITY, 100)]
        );
    }

    #[test]
    fn window_subtracts_the_start() {
        let start = vec![(0.0001, 5), (0.001, 5), (f64::INFINITY, 5)];
        let delay = window(&start, &parse(TEXT));
        assert_eq!(delay.packets, 95);
        assert_eq!(delay.p50_us_at_most, Some(1000.0));
        // 2 of the 95 packets lie above every finite bound, so p99 does too.
        assert_eq!(delay.p99_us_at_most, None);
    }

    #[test]
    fn empty_window_has_no_quantiles() {
        let buckets = parse(TEXT);
        let delay = window(&buckets, &buckets);
        assert_eq!(delay.packets, 0);
        assert_eq!(delay.p50_us_at_most, None);
    }
}
