//! [`Schedule`]: the stage engine shared by both models.
//!
//! A run is a list of stages `(duration, target)`; the target ramps linearly from the
//! previous stage's end value (the first from `start_target`) to the stage's target over
//! its duration. The closed model reads the target as a number of virtual users; the open
//! model reads it as an arrival rate and places arrival `k` (1, 2, ...) where the integral
//! of the rate first reaches `k`, so arrivals follow the ramp exactly and never drift.

/// One stage: ramp to `target` over `duration` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: f64,
    pub target: f64,
}

/// A validated list of stages with its precomputed start times and cumulative arrivals.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Per stage: (start time, duration, value at start, value at end, arrivals before it).
    segments: Vec<Segment>,
    start_target: f64,
    total: f64,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    t0: f64,
    duration: f64,
    from: f64,
    to: f64,
    /// The integral of the target over every earlier stage.
    before: f64,
}

impl Segment {
    /// The integral of the target from the segment's start over `tau` seconds.
    fn integral(&self, tau: f64) -> f64 {
        if self.duration <= 0.0 {
            return 0.0;
        }
        let slope = (self.to - self.from) / self.duration;
        self.from * tau + 0.5 * slope * tau * tau
    }
}

impl Schedule {
    /// A schedule from `start_target` through `stages`.
    ///
    /// # Errors
    /// A message naming the bad stage when a duration or target is negative or not finite,
    /// or when there is no stage.
    pub fn new(start_target: f64, stages: &[Stage]) -> Result<Schedule, String> {
        if !(start_target.is_finite() && start_target >= 0.0) {
            return Err(format!(
                "start_target must be a finite number >= 0, got {start_target}"
            ));
        }
        if stages.is_empty() {
            return Err("stages must hold at least one (duration, target) stage".into());
        }
        let mut segments = Vec::with_capacity(stages.len());
        let (mut t0, mut from, mut before) = (0.0, start_target, 0.0);
        for (i, s) in stages.iter().enumerate() {
            if !(s.duration.is_finite() && s.duration >= 0.0) {
                return Err(format!(
                    "stages[{i}]: duration must be a finite number of seconds >= 0, got {}",
                    s.duration
                ));
            }
            if !(s.target.is_finite() && s.target >= 0.0) {
                return Err(format!(
                    "stages[{i}]: target must be a finite number >= 0, got {}",
                    s.target
                ));
            }
            let seg = Segment {
                t0,
                duration: s.duration,
                from,
                to: s.target,
                before,
            };
            before += seg.integral(s.duration);
            t0 += s.duration;
            from = s.target;
            segments.push(seg);
        }
        Ok(Schedule {
            segments,
            start_target,
            total: t0,
        })
    }

    /// The total run time in seconds (the sum of the stage durations).
    pub fn total_duration(&self) -> f64 {
        self.total
    }

    /// The target at `t` seconds since the start (the last stage's target after the end).
    pub fn target_at(&self, t: f64) -> f64 {
        let t = t.max(0.0);
        for s in &self.segments {
            if t < s.t0 + s.duration {
                let frac = (t - s.t0) / s.duration;
                return s.from + (s.to - s.from) * frac;
            }
        }
        self.segments.last().map_or(self.start_target, |s| s.to)
    }

    /// The integral of the target from 0 to `t` (clamped to the run): the number of
    /// arrivals scheduled by then in the open model.
    pub fn integral(&self, t: f64) -> f64 {
        let t = t.clamp(0.0, self.total);
        for s in &self.segments {
            if t < s.t0 + s.duration {
                return s.before + s.integral(t - s.t0);
            }
        }
        self.segments
            .last()
            .map_or(0.0, |s| s.before + s.integral(s.duration))
    }

    /// The time (seconds since start) of arrival `k` (1-based): where the integral of the
    /// rate reaches `k`; `None` when the run ends first.
    pub fn arrival_time(&self, k: u64) -> Option<f64> {
        let k = k as f64;
        for s in &self.segments {
            let total = s.integral(s.duration);
            if s.before + total < k {
                continue;
            }
            let rem = k - s.before;
            let slope = if s.duration > 0.0 {
                (s.to - s.from) / s.duration
            } else {
                0.0
            };
            // Solve from*tau + slope/2*tau^2 = rem in the form that stays exact when the
            // slope is 0 or negative: tau = 2 rem / (from + sqrt(from^2 + 2 slope rem)).
            let disc = (s.from * s.from + 2.0 * slope * rem).max(0.0);
            let denom = s.from + disc.sqrt();
            if denom <= 0.0 {
                continue;
            }
            let tau = (2.0 * rem / denom).clamp(0.0, s.duration);
            return Some(s.t0 + tau);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(duration: f64, target: f64) -> Stage {
        Stage { duration, target }
    }

    #[test]
    fn ramp_shape_is_linear_between_stage_ends() {
        let s = Schedule::new(0.0, &[st(10.0, 100.0), st(20.0, 100.0), st(10.0, 0.0)]).unwrap();
        assert_eq!(s.total_duration(), 40.0);
        assert_eq!(s.target_at(0.0), 0.0);
        assert!((s.target_at(5.0) - 50.0).abs() < 1e-9);
        assert!((s.target_at(10.0) - 100.0).abs() < 1e-9);
        assert!((s.target_at(25.0) - 100.0).abs() < 1e-9);
        assert!((s.target_at(35.0) - 50.0).abs() < 1e-9);
        assert_eq!(s.target_at(50.0), 0.0);
    }

    #[test]
    fn zero_duration_stage_is_a_jump() {
        let s = Schedule::new(10.0, &[st(5.0, 10.0), st(0.0, 100.0), st(5.0, 100.0)]).unwrap();
        assert!((s.target_at(4.999) - 10.0).abs() < 1e-6);
        assert!((s.target_at(5.0) - 100.0).abs() < 1e-9);
        assert!((s.integral(10.0) - 550.0).abs() < 1e-9);
    }

    #[test]
    fn constant_rate_arrivals_are_evenly_spaced() {
        let s = Schedule::new(500.0, &[st(10.0, 500.0)]).unwrap();
        let times: Vec<f64> = (1..).map_while(|k| s.arrival_time(k)).collect();
        assert_eq!(times.len(), 5000);
        for (i, t) in times.iter().enumerate() {
            assert!((t - (i as f64 + 1.0) / 500.0).abs() < 1e-9, "{i}: {t}");
        }
    }

    #[test]
    fn ramp_arrival_counts_follow_the_integral() {
        // 0 -> 100/s over 10 s (500 arrivals), hold 100/s for 5 s (500), down to 0 over 10 s (500)
        let s = Schedule::new(0.0, &[st(10.0, 100.0), st(5.0, 100.0), st(10.0, 0.0)]).unwrap();
        let times: Vec<f64> = (1..).map_while(|k| s.arrival_time(k)).collect();
        assert_eq!(times.len(), 1500);
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        // arrivals in the first second of the ramp: integral of 10t over [0,1] = 5
        assert_eq!(times.iter().filter(|&&t| t <= 1.0 + 1e-9).count(), 5);
        // each arrival sits where the integral reaches its index
        for (i, &t) in times.iter().enumerate() {
            assert!((s.integral(t) - (i as f64 + 1.0)).abs() < 1e-6, "{i}: {t}");
        }
        let in_hold = times.iter().filter(|&&t| t > 10.0 && t <= 15.0).count();
        assert_eq!(in_hold, 500);
    }

    #[test]
    fn rejects_bad_stages() {
        assert!(Schedule::new(0.0, &[]).is_err());
        assert!(Schedule::new(-1.0, &[st(1.0, 1.0)]).is_err());
        let e = Schedule::new(0.0, &[st(1.0, 1.0), st(f64::NAN, 1.0)]).unwrap_err();
        assert!(e.contains("stages[1]"), "{e}");
        assert!(Schedule::new(0.0, &[st(1.0, -3.0)]).is_err());
    }

    #[test]
    fn zero_rate_has_no_arrivals() {
        let s = Schedule::new(0.0, &[st(5.0, 0.0)]).unwrap();
        assert_eq!(s.arrival_time(1), None);
    }
}
