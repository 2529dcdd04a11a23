//! The notification renderer: a step's messages rendered on a worker thread, each waited for at
//! most the render deadline, so a template that runs away costs its own notifications only.
//!
//! The worker renders the jobs it is handed in order and answers each, so the caller waiting
//! for answer *k* starts its clock when answer *k − 1* arrived: the deadline is per render. A
//! render past it is abandoned with its worker (which ends once that render finishes — fuel
//! bounds it — and it finds nobody listening), a fresh worker takes the remaining jobs, and the
//! rule version is quarantined: its later notifications get the fallback message at once, until
//! the rule changes (a new version). At most [`MAX_WORKERS`] workers, abandoned ones included, exist at a time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use serde_json::Value;

use super::template::{TemplateError, TemplateLimits, render};

/// Most render workers alive at once, the current one and abandoned ones still finishing.
const MAX_WORKERS: usize = 4;

/// A rule version: what a quarantine is about.
pub type RuleVersion = (String, String, u64);

/// One message to render.
pub struct RenderJob {
    /// The rule version whose template it is.
    pub rule: RuleVersion,
    /// The template text.
    pub template: Arc<str>,
    /// The values the template sees.
    pub context: Value,
}

type Answer = Result<String, TemplateError>;

struct Worker {
    jobs: mpsc::Sender<Arc<RenderJob>>,
    answers: mpsc::Receiver<Answer>,
}

/// Renders notification messages off the calling thread, under [`TemplateLimits`].
pub struct Renderer {
    limits: TemplateLimits,
    worker: Option<Worker>,
    alive: Arc<AtomicUsize>,
    quarantine: HashMap<RuleVersion, TemplateError>,
}

/// Counts a worker as alive until its thread ends.
struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Renderer {
    /// A renderer with the given limits; its first worker starts with the first job.
    pub fn new(limits: TemplateLimits) -> Renderer {
        Renderer {
            limits,
            worker: None,
            alive: Arc::new(AtomicUsize::new(0)),
            quarantine: HashMap::new(),
        }
    }

    /// The limits renders run under.
    pub fn limits(&self) -> &TemplateLimits {
        &self.limits
    }

    /// Renders every job; one answer per job, in order.
    pub fn render_all(&mut self, jobs: Vec<RenderJob>) -> Vec<Answer> {
        let jobs: Vec<Arc<RenderJob>> = jobs.into_iter().map(Arc::new).collect();
        let mut answers: Vec<Option<Answer>> = (0..jobs.len()).map(|_| None).collect();
        let timeout = self.limits.timeout;
        let mut from = 0;
        while from < jobs.len() {
            let mut pending = Vec::new();
            for (i, job) in jobs.iter().enumerate().skip(from) {
                match self.quarantine.get(&job.rule) {
                    Some(why) => answers[i] = Some(Err(why.clone())),
                    None => pending.push(i),
                }
            }
            from = jobs.len();
            let Some(worker) = self.worker() else {
                let busy = self.alive.load(Ordering::SeqCst);
                for i in pending {
                    answers[i] = Some(Err(TemplateError::Busy(busy)));
                }
                break;
            };
            for &i in &pending {
                let _ = worker.jobs.send(jobs[i].clone());
            }
            for &i in &pending {
                match worker.answers.recv_timeout(timeout) {
                    Ok(answer) => answers[i] = Some(answer),
                    Err(e) => {
                        let why = match e {
                            mpsc::RecvTimeoutError::Timeout => TemplateError::TooSlow(timeout),
                            mpsc::RecvTimeoutError::Disconnected => {
                                TemplateError::Failed("the renderer stopped".into())
                            }
                        };
                        tracing::warn!(
                            tenant = %jobs[i].rule.0,
                            rule = %jobs[i].rule.1,
                            version = jobs[i].rule.2,
                            error = %why,
                            "a rule template was abandoned; its notifications get the fallback message until the rule changes"
                        );
                        answers[i] = Some(Err(why.clone()));
                        self.quarantine.insert(jobs[i].rule.clone(), why);
                        // The abandoned worker ends on its own; the rest go to a fresh one.
                        self.worker = None;
                        from = i + 1;
                        break;
                    }
                }
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(TemplateError::Failed("not rendered".into()))))
            .collect()
    }

    /// The current worker, started when there is none and the bound allows.
    fn worker(&mut self) -> Option<&Worker> {
        if self.worker.is_none() {
            if self.alive.load(Ordering::SeqCst) >= MAX_WORKERS {
                return None;
            }
            let (jobs, job_rx) = mpsc::channel::<Arc<RenderJob>>();
            let (answer_tx, answers) = mpsc::channel();
            self.alive.fetch_add(1, Ordering::SeqCst);
            let alive = Alive(self.alive.clone());
            let limits = self.limits;
            let spawned = std::thread::Builder::new()
                .name("tidemark-render".into())
                .spawn(move || {
                    let _alive = alive;
                    for job in job_rx {
                        if answer_tx
                            .send(render(&job.template, &job.context, &limits))
                            .is_err()
                        {
                            break;
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a render worker");
                return None;
            }
            self.worker = Some(Worker { jobs, answers });
        }
        self.worker.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn job(rule: &str, template: &str) -> RenderJob {
        RenderJob {
            rule: ("shop".into(), rule.into(), 1),
            template: template.into(),
            context: json!({"n": 3}),
        }
    }

    #[test]
    fn a_slow_render_costs_its_own_rule_only() {
        let mut renderer = Renderer::new(TemplateLimits {
            // Enough fuel that the slow template outlasts the deadline in any build.
            fuel: 10_000_000,
            timeout: Duration::from_millis(20),
            ..TemplateLimits::default()
        });
        let slow =
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
        let answers = renderer.render_all(vec![
            job("a", "{{ n }}"),
            job("slow", slow),
            job("b", "{{ n * 2 }}"),
            job("slow", slow),
        ]);
        assert_eq!(answers[0], Ok("3".into()));
        assert!(
            matches!(answers[1], Err(TemplateError::TooSlow(_))),
            "{answers:?}"
        );
        assert_eq!(answers[2], Ok("6".into()));
        assert!(
            matches!(answers[3], Err(TemplateError::TooSlow(_))),
            "{answers:?}"
        );
        // Quarantined: answered at once, without rendering.
        let started = std::time::Instant::now();
        let answers = renderer.render_all(vec![job("slow", slow), job("a", "{{ n }}")]);
        assert!(answers[0].is_err() && answers[1] == Ok("3".into()));
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}
