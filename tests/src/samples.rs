//! The conversation the benchmarks run through guests: ten earlier turns and a question,
//! and about 2 KB of the Markdown a small model writes back.

use pi_agent::prompt::{ChatMessage, Prompt, Role};

/// Ten earlier turns and a new question.
pub fn sample_prompt() -> Prompt {
    let mut messages: Vec<ChatMessage> = (0..10)
        .map(|i| {
            let role = if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            ChatMessage::new(
                role,
                format!(
                    "Turn {i}: {}",
                    "some earlier conversation about the Pi and its fan curve. ".repeat(3)
                ),
            )
        })
        .collect();
    messages.push(ChatMessage::new(
        Role::User,
        "How do I read the CPU temperature from a shell?",
    ));
    Prompt {
        model: "gemma2:2b".into(),
        messages,
        options: Default::default(),
    }
}

/// About 2 KB of the Markdown a small model writes.
pub fn sample_reply() -> String {
    let mut reply = String::from(
        "## Reading the temperature\n\nOn **Raspberry Pi OS** the quickest way is `vcgencmd`:\n\n```bash\nvcgencmd measure_temp\n# temp=48.3'C\n```\n\n\
         You can also read the *kernel's* sensor directly:\n\n1. Open a shell.\n2. Run `cat /sys/class/thermal/thermal_zone0/temp`.\n3. Divide by 1000 to get °C.\n\n\
         | Method | Needs root | Units |\n|---|---|---|\n| vcgencmd | no | °C |\n| sysfs | no | m°C |\n\n\
         > Tip: above 80 °C the Pi throttles; a heatsink & fan keep it < 60 °C.\n\n",
    );
    while reply.len() < 2000 {
        reply.push_str("- Keep an eye on [throttling](https://www.raspberrypi.com/documentation/) with `vcgencmd get_throttled`.\n");
    }
    reply
}
