#include "common/fs_atomic.hpp"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

namespace plx {
namespace fs = std::filesystem;

namespace {

std::mutex g_hook_mutex;
WriteFaultHook g_write_fault_hook;

[[noreturn]] void throw_io(std::string_view what, const fs::path& path, int err) {
  throw IoError(fmt::format("{} {}: {}", what, path.string(), std::strerror(err)), err);
}

int injected_fault(const fs::path& path) {
  std::lock_guard lock(g_hook_mutex);
  return g_write_fault_hook ? g_write_fault_hook(path) : 0;
}

// Closes on scope exit; keeps every error path below from leaking a descriptor.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

// write() may write less than asked (signals, pipes, some file systems): loop until done.
void write_all(int fd, std::string_view bytes, const fs::path& path) {
  if (int err = injected_fault(path)) throw_io("cannot write", path, err);
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_io("cannot write", path, errno);
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

// The data must be on disk before any rename publishes it: otherwise a crash can leave
// the new name pointing at an empty or partial file (the rename is journaled, the data
// is not necessarily).
void fsync_fd(int fd, const fs::path& path) {
  while (::fsync(fd) != 0) {
    if (errno != EINTR) throw_io("cannot fsync", path, errno);
  }
}

void write_new_file(const fs::path& path, std::string_view bytes) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (fd.fd < 0) throw_io("cannot create", path, errno);
  write_all(fd.fd, bytes, path);
  fsync_fd(fd.fd, path);
  if (::close(fd.release()) != 0) throw_io("cannot close", path, errno);  // NFS reports here
}

// A name no other writer uses: the pid separates processes, the counter threads.
fs::path temp_sibling(const fs::path& path) {
  static std::atomic<unsigned> counter{0};
  return path.parent_path() / fmt::format(".{}.tmp.{}.{}", path.filename().string(), ::getpid(),
                                          counter.fetch_add(1));
}

}  // namespace

void set_write_fault_hook_for_testing(WriteFaultHook hook) {
  std::lock_guard lock(g_hook_mutex);
  g_write_fault_hook = std::move(hook);
}

void write_file_durable(const fs::path& path, std::string_view bytes) {
  write_new_file(path, bytes);
}

void fsync_dir(const fs::path& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.fd < 0) throw_io("cannot open directory", dir, errno);
  // Some file systems cannot fsync a directory (EINVAL); they give no stronger guarantee
  // we could ask for, so that is not an error.
  while (::fsync(fd.fd) != 0) {
    if (errno == EINVAL) return;
    if (errno != EINTR) throw_io("cannot fsync directory", dir, errno);
  }
}

void write_file_atomic(const fs::path& path, std::string_view bytes) {
  // The temp file sits in the target's directory: rename() is atomic only within one
  // file system, and a readable half-written temp file is never at the real name.
  fs::path tmp = temp_sibling(path);
  try {
    write_new_file(tmp, bytes);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  // rename() replaces the target atomically: readers see the old file or the new one.
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw_io("cannot rename into place", path, err);
  }
  // The rename is a change to the directory; fsync it so the new name survives a crash.
  fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  fsync_dir(dir);
}

std::optional<std::string> read_file(const fs::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.fd < 0) return std::nullopt;
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  std::string out;
  out.reserve(static_cast<std::size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {  // read to EOF rather than trusting st_size: the file may change under us
    ssize_t n = ::read(fd.fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) return out;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

// ---------------------------------------------------------------------------------------
// FileLock

namespace {

// Returns a descriptor holding the lock, -1 when !wait and someone else holds it.
int acquire_lock(const fs::path& path, bool wait) {
  for (;;) {
    Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (fd.fd < 0) throw_io("cannot open lock file", path, errno);
    struct flock fl {};
    fl.l_type = F_WRLCK;  // whole file (l_start = l_len = 0); l_pid must be 0 for OFD locks
    fl.l_whence = SEEK_SET;
    while (::fcntl(fd.fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) != 0) {
      if (errno == EINTR) continue;
      if (!wait && (errno == EAGAIN || errno == EACCES)) return -1;
      throw_io("cannot lock", path, errno);
    }
    // Between our open() and getting the lock, the file may have been unlinked (cache
    // clear) and maybe recreated by someone else. A lock on an unlinked inode excludes
    // nobody who opens the path now, so only keep it if the path still names our inode.
    struct stat held {}, now {};
    if (::fstat(fd.fd, &held) != 0) throw_io("cannot stat lock file", path, errno);
    if (::stat(path.c_str(), &now) == 0 && now.st_dev == held.st_dev &&
        now.st_ino == held.st_ino)
      return fd.release();
    // Otherwise close (dropping the useless lock) and retry on the current file.
  }
}

}  // namespace

FileLock::FileLock(const fs::path& path) : fd_(acquire_lock(path, true)) {}

std::optional<FileLock> FileLock::try_lock(const fs::path& path) {
  int fd = acquire_lock(path, false);
  if (fd < 0) return std::nullopt;
  return FileLock(fd);
}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    unlock();
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

// Closing the last descriptor of the open file description releases an OFD lock; no
// explicit F_UNLCK needed (and none could fail half-way).
void FileLock::unlock() noexcept {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

}  // namespace plx
