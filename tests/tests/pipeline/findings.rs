//! Failed checks, collected so that one run reports all of them.

use lab_tests::native::NativeStack;

#[derive(Default)]
pub struct Findings(Vec<String>);

impl Findings {
    pub fn check(&mut self, passed: bool, message: String) {
        if !passed {
            self.0.push(message);
        }
    }

    pub fn fail(&mut self, message: String) {
        self.0.push(message);
    }

    /// Fails the test with every finding, and the stack's last log lines.
    pub fn assert_none(&self, stack: &NativeStack) {
        assert!(
            self.0.is_empty(),
            "{} pipeline check(s) failed:\n\n- {}\n\nthe stack's last log lines:\n{}",
            self.0.len(),
            self.0.join("\n\n- "),
            stack.log_tails(15)
        );
    }
}
