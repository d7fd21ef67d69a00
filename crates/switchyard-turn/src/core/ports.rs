//! Relay port numbers: which are free, and the ports reserved by EVEN-PORT with the R bit
//! (<https://www.rfc-editor.org/rfc/rfc8656#section-14.6>).

/// Free and used ports of one relay address, as a bit set over the configured range.
#[derive(Debug)]
pub struct PortPool {
    min: u16,
    max: u16,
    used: Vec<u64>,
    next: u16,
}

impl PortPool {
    /// Creates a pool of `min..=max`, all free.
    pub fn new(min: u16, max: u16) -> Self {
        PortPool {
            min,
            max,
            used: vec![0; 65536 / 64],
            next: min,
        }
    }

    /// Takes a free port, scanning from after the last one taken. With `even`, the port is
    /// even, and with `pair` the next port is free too and is taken as well.
    pub fn acquire(&mut self, even: bool, pair: bool) -> Option<u16> {
        let span = u32::from(self.max - self.min) + 1;
        for step in 0..span {
            let offset = (u32::from(self.next - self.min) + step) % span;
            let port = self.min + offset as u16;
            if (even || pair) && !port.is_multiple_of(2) {
                continue;
            }
            if pair && (port == self.max || self.is_used(port + 1)) {
                continue;
            }
            if self.is_used(port) {
                continue;
            }
            self.mark(port, true);
            if pair {
                self.mark(port + 1, true);
            }
            self.next = if port >= self.max - u16::from(pair) {
                self.min
            } else {
                port + 1 + u16::from(pair)
            };
            return Some(port);
        }
        None
    }

    /// Returns `port` to the pool.
    pub fn release(&mut self, port: u16) {
        if (self.min..=self.max).contains(&port) {
            self.mark(port, false);
        }
    }

    fn is_used(&self, port: u16) -> bool {
        self.used[usize::from(port / 64)] & (1 << (port % 64)) != 0
    }

    fn mark(&mut self, port: u16, used: bool) {
        let word = &mut self.used[usize::from(port / 64)];
        if used {
            *word |= 1 << (port % 64);
        } else {
            *word &= !(1 << (port % 64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_runs_out_and_reuses_released_ports() {
        let mut pool = PortPool::new(50000, 50002);
        let ports: Vec<_> = (0..3).map(|_| pool.acquire(false, false)).collect();
        assert_eq!(ports, [Some(50000), Some(50001), Some(50002)]);
        assert_eq!(pool.acquire(false, false), None);
        pool.release(50001);
        assert_eq!(pool.acquire(false, false), Some(50001));
    }

    #[test]
    fn even_pairs_skip_odd_and_used_ports() {
        let mut pool = PortPool::new(50001, 50006);
        assert_eq!(pool.acquire(false, false), Some(50001));
        assert_eq!(pool.acquire(true, true), Some(50002));
        assert_eq!(pool.acquire(true, false), Some(50004));
        assert_eq!(
            pool.acquire(true, true),
            None,
            "50006 has no free successor"
        );
        assert_eq!(pool.acquire(false, false), Some(50005));
    }

    #[test]
    fn single_port_range() {
        let mut pool = PortPool::new(65535, 65535);
        assert_eq!(pool.acquire(false, false), Some(65535));
        assert_eq!(pool.acquire(false, false), None);
        pool.release(65535);
        assert_eq!(pool.acquire(true, true), None);
    }
}
