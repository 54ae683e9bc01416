//! What a chaos run sends: for each request's sequence number, its class (interactive,
//! batch, pass code), the queue it goes to and its body.

/// The kind of a request, for the per-class counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// A lookup on the interactive queue, no pass code.
    Interactive,
    /// A lookup on the batch queue.
    Batch,
    /// An interactive request with `identifier` and `pass_code` (an Argon2 check).
    PassCode,
}

impl Class {
    /// The name in the figures.
    pub fn name(self) -> &'static str {
        match self {
            Class::Interactive => "interactive",
            Class::Batch => "batch",
            Class::PassCode => "pass code",
        }
    }
}

/// What a run sends: for each sequence number, its class, queue and body.
pub struct Traffic {
    interactive: String,
    batch: String,
    plain: Vec<Vec<u8>>,
    pass_code: Vec<Vec<u8>>,
    mixed: bool,
}

impl Traffic {
    /// Every request on `queue`, cycling through `bodies`.
    pub fn interactive(queue: &str, bodies: Vec<Vec<u8>>) -> Traffic {
        Traffic {
            interactive: queue.to_owned(),
            batch: String::new(),
            plain: bodies,
            pass_code: Vec::new(),
            mixed: false,
        }
    }

    /// One request in 10 on `batch` (a body of `plain`), one in 200 on `interactive`
    /// with a body of `pass_code`, the rest on `interactive` with a body of `plain`.
    /// At 1,000 requests/s that is 5 pass-code checks a second, far under the ~100 a
    /// second two cores verify, so none is shed (docs/protocol.md §14) even when a
    /// restarted worker takes a backlog of them at once or the machine is busy (1 in
    /// 50 saw 83 shed while a build ran beside the scenario).
    pub fn mixed(
        interactive: &str,
        batch: &str,
        plain: Vec<Vec<u8>>,
        pass_code: Vec<Vec<u8>>,
    ) -> Traffic {
        Traffic {
            interactive: interactive.to_owned(),
            batch: batch.to_owned(),
            plain,
            pass_code,
            mixed: true,
        }
    }

    /// The class of request `id`. The two residues never meet (25 mod 10 is 5).
    pub fn class(&self, id: u64) -> Class {
        if !self.mixed {
            Class::Interactive
        } else if id % 200 == 25 {
            Class::PassCode
        } else if id % 10 == 3 {
            Class::Batch
        } else {
            Class::Interactive
        }
    }

    /// The queue and body of request `id`.
    pub fn pick(&self, id: u64) -> (&str, &[u8]) {
        // Batch and pass-code requests come every 10th and 200th number: counted in tens,
        // they still cycle through their bodies.
        let (queue, bodies, turn) = match self.class(id) {
            Class::Interactive => (&self.interactive, &self.plain, id),
            Class::Batch => (&self.batch, &self.plain, id / 10),
            Class::PassCode => (&self.interactive, &self.pass_code, id / 10),
        };
        (queue, &bodies[turn as usize % bodies.len()])
    }
}
