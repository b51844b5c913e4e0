// The Logs page: the kept lines, then each new one, over Server-Sent Events; the level
// select reconnects with the new filter. At most the ring's 1,000 lines stay on the page.
(function () {
  const log = document.getElementById("log");
  const level = document.getElementById("level");
  const state = document.getElementById("state");
  const MAX_LINES = 1000;
  let source;

  function add(text, cls) {
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    const div = document.createElement("div");
    div.className = cls;
    div.textContent = text;
    log.appendChild(div);
    while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function connect() {
    if (source) source.close();
    log.textContent = "";
    source = new EventSource("/logs/stream?level=" + encodeURIComponent(level.value));
    source.onopen = () => { state.textContent = "live"; };
    source.onerror = () => { state.textContent = "reconnecting…"; };
    source.addEventListener("line", (e) => {
      const line = JSON.parse(e.data);
      add(line.text, line.level);
    });
    source.addEventListener("missed", (e) => add("… " + e.data + " lines skipped (the page fell behind)", "WARN"));
  }

  level.addEventListener("change", connect);
  connect();
})();
