#include "autotune/tune_workers.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include "autotune/tune_report.hpp"
#include "common/fs_atomic.hpp"
#include "common/json.hpp"

extern char** environ;

namespace plx::tune {

namespace fs = std::filesystem;
using clk = std::chrono::steady_clock;

namespace {

double since(clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); }

// ---- parent side -----------------------------------------------------------------------------

struct Child {
  pid_t pid = -1;
  int out = -1;
  fs::path err;
};

Child spawn(const std::vector<std::string>& command, const fs::path& job, const fs::path& err) {
  if (command.empty()) throw Error("tune: no worker command");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw Error(fmt::format("tune: pipe failed: {}", std::strerror(errno)));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const std::string exe = command.front();
  std::vector<std::string> args = command;
  args.push_back(job.string());
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  Child c;
  const int rc = ::posix_spawn(&c.pid, exe.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    throw Error(fmt::format("tune: cannot start the worker {}: {}", exe, std::strerror(rc)));
  }
  c.out = fds[0];
  c.err = err;
  return c;
}

// Next line from the child, waiting at most timeout_s. false at end of file or timeout.
bool next_line(int fd, std::string& buf, std::string& line, double timeout_s, bool& timed_out) {
  timed_out = false;
  const auto t0 = clk::now();
  for (;;) {
    if (auto nl = buf.find('\n'); nl != std::string::npos) {
      line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      return true;
    }
    const double left = timeout_s - since(t0);
    if (left <= 0) {
      timed_out = true;
      return false;
    }
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, int(std::min(left, 1.0) * 1000) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char chunk[65536];
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buf.append(chunk, std::size_t(n));
  }
}

std::string last_line_of(const fs::path& file) {
  std::ifstream f(file);
  std::string line, last;
  while (std::getline(f, line))
    if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
  return last;
}

// Why the child ended, from its wait status, a timeout, its fatal message, its stderr.
std::string ending(int status, bool timed_out, double stall_s, const std::string& fatal, const fs::path& err) {
  std::string why;
  if (timed_out)
    why = fmt::format("timed out: no progress for {:.0f} s, worker killed", stall_s);
  else if (WIFSIGNALED(status))
    why = fmt::format("crashed: worker killed by signal {} ({})", WTERMSIG(status), ::strsignal(WTERMSIG(status)));
  else if (WIFEXITED(status))
    why = fmt::format("worker exited with status {}", WEXITSTATUS(status));
  else
    why = "worker ended";
  if (!fatal.empty())
    why += ": " + fatal;
  else if (std::string l = last_line_of(err); !l.empty())
    why += ": " + l;
  return why;
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::string t = (fs::temp_directory_path() / "plx-tune-XXXXXX").string();
    if (!::mkdtemp(t.data())) throw Error(fmt::format("tune: cannot create a temporary directory: {}", std::strerror(errno)));
    path = t;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

int finish_child(Child& c, bool kill_it) {
  if (kill_it) ::kill(c.pid, SIGKILL);
  int status = 0;
  while (::waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
  }
  ::close(c.out);
  return status;
}

}  // namespace

// ---- the parent ------------------------------------------------------------------------------

std::vector<BucketOutcome> run_tune_workers(const std::vector<WorkerBucket>& buckets, const WorkerOptions& o,
                                                  const WorkerEvents& ev) {
  const std::size_t n = buckets.size();
  std::vector<BucketOutcome> outs(n);
  std::vector<bool> finished(n, false);
  struct Crash {
    std::size_t bucket;
    std::string reason;
  };
  std::map<std::string, Crash> excluded;  // variant -> where and why it killed a worker
  TempDir tmp;
  const auto t_start = clk::now();
  int restarts = 0;

  for (;;) {
    std::vector<std::size_t> pending;
    for (std::size_t i = 0; i < n; ++i)
      if (!finished[i]) pending.push_back(i);
    if (pending.empty()) break;

    // The job: pending buckets, candidates that have not killed a worker.
    std::vector<std::vector<int>> index_map(n);  // job candidate -> full candidate
    json::Value job = json::Value::object();
    job.set("mode", "tune");
    job.set("budget_s", std::max(0.0, o.budget_s - since(t_start)));
    job.set("bucket_min_s", o.bucket_min_s);
    job.set("bucket_max_s", o.bucket_max_s);
    json::Value opt = json::Value::object();
    opt.set("finalists", o.tune.finalists);
    opt.set("finalist_within", o.tune.finalist_within);
    opt.set("check", o.tune.check);
    opt.set("spin_ns", std::int64_t(o.tune.spin_ns));
    job.set("options", std::move(opt));
    json::Value jbs = json::Value::array();
    for (std::size_t i : pending) {
      const WorkerBucket& wb = buckets[i];
      json::Value jb = json::Value::object();
      jb.set("b", std::int64_t(i));
      jb.set("op", std::string(to_string(wb.bucket.op)));
      jb.set("gqa", wb.bucket.gqa);
      jb.set("args", to_json(wb.bucket.args()));
      json::Value jcs = json::Value::array();
      for (std::size_t c = 0; c < wb.candidates.size(); ++c) {
        const Candidate& cand = wb.candidates[c];
        if (excluded.count(cand.name())) continue;
        json::Value jc = json::Value::object();
        jc.set("name", cand.name());
        jc.set("registers", cand.registers);
        jc.set("spill_bytes", cand.spill_bytes);
        jc.set("model_choice", cand.model_choice);
        jc.set("model_rank", cand.model_rank);
        jcs.push_back(std::move(jc));
        index_map[i].push_back(int(c));
      }
      jb.set("candidates", std::move(jcs));
      jbs.push_back(std::move(jb));
    }
    job.set("buckets", std::move(jbs));
    const fs::path job_file = tmp.path / fmt::format("job-{}.json", restarts);
    write_file_atomic(job_file, job.dump() + "\n");

    Child child = spawn(o.command, job_file, tmp.path / fmt::format("worker-{}.err", restarts));
    std::string buf, line, fatal;
    long cur_b = -1, cur_c = -1;
    bool progress = false, timed_out = false;
    while (next_line(child.out, buf, line, o.stall_s, timed_out)) {
      json::Value e;
      try {
        e = json::parse(line);
      } catch (const std::exception&) {
        continue;  // not ours (a library printing to stdout): ignore
      }
      const std::string kind = e.find("ev") && e.at("ev").is_string() ? e.at("ev").as_string() : "";
      const long b = e.find("b") ? long(e.at("b").as_int()) : -1;
      if (kind == "fatal") {
        fatal = e.find("error") && e.at("error").is_string() ? e.at("error").as_string() : "";
        continue;
      }
      if (b < 0 || std::size_t(b) >= n) continue;
      const auto& map = index_map[std::size_t(b)];
      auto full = [&](long c) { return c >= 0 && std::size_t(c) < map.size() ? map[std::size_t(c)] : -1; };
      if (kind == "begin") {
        cur_b = b;
        cur_c = full(e.at("c").as_int());
        if (ev.begin && cur_c >= 0) ev.begin(int(b), int(cur_c), e.at("phase").as_string());
      } else if (kind == "result") {
        const int c = full(e.at("c").as_int());
        if (ev.result && c >= 0) ev.result(int(b), c, result_from_json(e));
      } else if (kind == "done") {
        const BucketOutcome got = outcome_from_json(e);
        const WorkerBucket& wb = buckets[std::size_t(b)];
        BucketOutcome out = got;
        out.results.assign(wb.candidates.size(), CandidateResult{});
        for (std::size_t c = 0; c < wb.candidates.size(); ++c) {
          auto it = excluded.find(wb.candidates[c].name());
          if (it == excluded.end()) continue;
          out.results[c].status = Status::failed;
          out.results[c].error = it->second.bucket == std::size_t(b)
                                     ? it->second.reason
                                     : fmt::format("not run: it killed the tuning worker in bucket {} ({})",
                                                   buckets[it->second.bucket].key, it->second.reason);
        }
        for (std::size_t k = 0; k < got.results.size() && k < map.size(); ++k) out.results[map[k]] = got.results[k];
        out.winner = full(got.winner);
        out.untuned = -1;
        for (std::size_t c = 0; c < wb.candidates.size(); ++c)
          if (wb.candidates[c].model_choice) out.untuned = int(c);
        out.runner_up = full(got.runner_up);
        outs[std::size_t(b)] = out;
        finished[std::size_t(b)] = true;
        progress = true;
        cur_b = cur_c = -1;
        if (ev.done) ev.done(int(b), outs[std::size_t(b)]);
      }
    }
    const int status = finish_child(child, timed_out);
    const bool all_done = std::all_of(finished.begin(), finished.end(), [](bool f) { return f; });
    if (all_done) break;
    const std::string why = ending(status, timed_out, o.stall_s, fatal, child.err);
    if (cur_b >= 0 && cur_c >= 0 && !finished[std::size_t(cur_b)]) {
      const Candidate& c = buckets[std::size_t(cur_b)].candidates[std::size_t(cur_c)];
      excluded[c.name()] = Crash{std::size_t(cur_b), why};
      CandidateResult r;
      r.status = Status::failed;
      r.error = why;
      if (ev.result) ev.result(int(cur_b), int(cur_c), r);
      progress = true;
    }
    if (!progress || ++restarts > o.max_restarts) {
      for (std::size_t i = 0; i < n; ++i)
        if (!finished[i]) {
          outs[i].results.assign(buckets[i].candidates.size(), CandidateResult{});
          outs[i].error = fmt::format("not tuned: {}{}", why,
                                      progress ? fmt::format(" (after {} restarts)", restarts) : "");
        }
      break;
    }
  }
  return outs;
}

std::vector<Repeat> run_repeat_workers(const std::vector<WorkerBucket>& buckets,
                                       const std::vector<BucketOutcome>& outs, const WorkerOptions& o,
                                       const WorkerEvents& ev) {
  std::vector<Repeat> rep(buckets.size());
  std::vector<WorkerBucket> job;
  std::vector<std::size_t> from;  // job bucket -> bucket
  for (std::size_t i = 0; i < buckets.size(); ++i) {
    const int w = i < outs.size() ? outs[i].winner : -1;
    if (w < 0 || std::size_t(w) >= buckets[i].candidates.size()) {
      rep[i].error = "no winner to repeat";
      continue;
    }
    WorkerBucket wb;
    wb.bucket = buckets[i].bucket;
    wb.key = buckets[i].key;
    wb.candidates = {buckets[i].candidates[std::size_t(w)]};
    job.push_back(std::move(wb));
    from.push_back(i);
  }
  if (job.empty()) return rep;
  WorkerOptions ro = o;
  ro.tune.check = false;  // checked in the race
  WorkerEvents rev;  // events in the caller's bucket numbering, candidate = the winner's index
  if (ev.begin)
    rev.begin = [&](int b, int, const std::string& phase) { ev.begin(int(from[std::size_t(b)]), outs[from[std::size_t(b)]].winner, phase); };
  if (ev.result)
    rev.result = [&](int b, int, const CandidateResult& r) { ev.result(int(from[std::size_t(b)]), outs[from[std::size_t(b)]].winner, r); };
  if (ev.done) rev.done = [&](int b, const BucketOutcome& out) { ev.done(int(from[std::size_t(b)]), out); };
  const std::vector<BucketOutcome> got = run_tune_workers(job, ro, rev);
  for (std::size_t k = 0; k < got.size(); ++k) {
    Repeat& r = rep[from[k]];
    const BucketOutcome& g = got[k];
    if (g.winner == 0 && g.winner_us > 0) {
      r.us = g.winner_us;
    } else if (!g.error.empty()) {
      r.error = g.error;
    } else if (!g.results.empty() && !g.results[0].error.empty()) {
      r.error = g.results[0].error;
    } else {
      r.error = "not measured";
    }
  }
  return rep;
}

Ceilings run_ceilings_worker(const std::vector<std::string>& command, double timeout_s, std::string* wgmma_error_out) {
  TempDir tmp;
  json::Value job = json::Value::object();
  job.set("mode", "ceilings");
  const fs::path job_file = tmp.path / "ceilings.json";
  write_file_atomic(job_file, job.dump() + "\n");
  Child child = spawn(command, job_file, tmp.path / "ceilings.err");
  std::string buf, line, fatal;
  bool timed_out = false;
  std::optional<Ceilings> got;
  std::string wgmma_error;
  while (next_line(child.out, buf, line, timeout_s, timed_out)) {
    try {
      const json::Value e = json::parse(line);
      const std::string kind = e.find("ev") ? e.at("ev").as_string() : "";
      if (kind == "ceilings") {
        got = ceilings_from_json(e);
        if (const json::Value* w = e.find("wgmma_error"); w && w->is_string()) wgmma_error = w->as_string();
      } else if (kind == "fatal" && e.find("error")) {
        fatal = e.at("error").as_string();
      }
    } catch (const std::exception&) {
    }
  }
  const int status = finish_child(child, timed_out);
  if (!got || !got->valid())
    throw Error("measuring the GPU's ceilings failed: " + ending(status, timed_out, timeout_s, fatal, child.err));
  if (wgmma_error_out) *wgmma_error_out = wgmma_error;
  return *got;
}

}  // namespace plx::tune
