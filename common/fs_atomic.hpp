// Crash-safe file writes, tolerant reads and a cross-process lock, for the kernel cache
// and the tuning database. POSIX only (Linux: the lock uses open file description locks).
#pragma once
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "parallax/errors.hpp"

namespace plx {

// A file-system call failed. error_code is the errno (ENOSPC, EACCES, EROFS, ...).
struct IoError : CacheError {
  IoError(const std::string& msg, int error_code_) : CacheError(msg), error_code(error_code_) {}
  int error_code;
};

// Replaces `path` with `bytes` so that every reader, and the file after a crash or power
// loss, holds either the old content or the new one, never a mix or a truncated file.
// Throws IoError.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

// Creates `path` (which must not exist), writes `bytes` and fsyncs it. For files inside a
// private directory that is published later by renaming the directory. Throws IoError.
void write_file_durable(const std::filesystem::path& path, std::string_view bytes);

// fsyncs a directory, so that names created, renamed or removed in it survive a crash.
// Throws IoError.
void fsync_dir(const std::filesystem::path& dir);

// The whole content of a regular file; nullopt when it is missing, not a regular file or
// unreadable (callers treat all of these as "not there").
std::optional<std::string> read_file(const std::filesystem::path& path);

// An exclusive lock on `path` (created when missing), held from construction until
// destruction or unlock(), excluding other processes AND other threads of this process.
//
// Why fcntl(F_OFD_SETLKW) and not the alternatives:
//  * classic POSIX locks (F_SETLKW) belong to the process: a second thread "acquires" a
//    lock its process already holds, and closing ANY descriptor of the file drops it;
//  * flock() does not work over older NFS; OFD locks are forwarded to the NFS lock manager;
//  * an OFD lock belongs to the open file description, so it dies with the last
//    descriptor, i.e. when the holder exits or is SIGKILLed: a stale lock file is
//    harmless and never needs cleaning up by hand.
// A child forked while the lock is held shares the open file description, hence the lock,
// until it closes the descriptor or exits (O_CLOEXEC drops it on exec).
// The lock file itself is never removed by the lock; removing it (e.g. `plx cache clear`)
// is safe because acquisition re-checks that the locked inode is still the file at `path`.
class FileLock {
 public:
  explicit FileLock(const std::filesystem::path& path);  // blocks; throws IoError
  // nullopt when another holder has it right now; throws IoError on other failures.
  static std::optional<FileLock> try_lock(const std::filesystem::path& path);

  FileLock(FileLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock() { unlock(); }

  void unlock() noexcept;
  bool locked() const { return fd_ >= 0; }

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// Fault injection for tests of "disk full" and friends: before each write of the functions
// above, the hook is called with the target path; a non-zero return is used as the errno
// of a failed write. Pass nullptr to remove. Process-wide.
using WriteFaultHook = std::function<int(const std::filesystem::path&)>;
void set_write_fault_hook_for_testing(WriteFaultHook hook);

}  // namespace plx
