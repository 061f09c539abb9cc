#include "sandbox/privileges.h"

#include <dirent.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <optional>
#include <vector>

namespace rngmux {
namespace {

std::optional<unsigned long> AsNumber(const std::string& text) {
  unsigned long value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

// getpwnam_r/getgrnam_r want a buffer; entries with many members need more.
constexpr std::size_t kDatabaseBufferBytes = 64 * 1024;

bool CapGet(__user_cap_data_struct (&data)[2]) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  return syscall(SYS_capget, &header, data) == 0;
}

Status Failed(const std::string& what, int err) {
  return Status::FromErrno("dropping privileges: " + what, err);
}

}  // namespace

Result<TargetIdentity> ResolveIdentity(const std::string& user, const std::string& user_name,
                                       const std::string& group, const std::string& group_name) {
  TargetIdentity target;
  if (user.empty()) {
    if (!group.empty()) return Status::Error(group_name + " needs a user to drop to");
    return target;
  }
  std::vector<char> buffer(kDatabaseBufferBytes);
  passwd pw{};
  passwd* pw_found = nullptr;
  if (const auto uid = AsNumber(user)) {
    getpwuid_r(static_cast<uid_t>(*uid), &pw, buffer.data(), buffer.size(), &pw_found);
    target.uid = static_cast<uid_t>(*uid);
    if (pw_found == nullptr && group.empty()) {
      return Status::Error(user_name + " \"" + user +
                           "\": no such user to take a group from; give a group");
    }
  } else {
    getpwnam_r(user.c_str(), &pw, buffer.data(), buffer.size(), &pw_found);
    if (pw_found == nullptr) return Status::Error(user_name + " \"" + user + "\": no such user");
    target.uid = pw.pw_uid;
  }
  target.user = user;
  if (group.empty()) {
    target.gid = pw.pw_gid;
    std::vector<char> group_buffer(kDatabaseBufferBytes);
    ::group gr{};
    ::group* gr_found = nullptr;
    getgrgid_r(target.gid, &gr, group_buffer.data(), group_buffer.size(), &gr_found);
    target.group = gr_found != nullptr ? gr.gr_name : std::to_string(target.gid);
    return target;
  }
  if (const auto gid = AsNumber(group)) {
    target.gid = static_cast<gid_t>(*gid);
  } else {
    std::vector<char> group_buffer(kDatabaseBufferBytes);
    ::group gr{};
    ::group* gr_found = nullptr;
    getgrnam_r(group.c_str(), &gr, group_buffer.data(), group_buffer.size(), &gr_found);
    if (gr_found == nullptr) return Status::Error(group_name + " \"" + group + "\": no such group");
    target.gid = gr.gr_gid;
  }
  target.group = group;
  return target;
}

Status DisableCoreDumps() {
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return Status::FromErrno("prctl PR_SET_DUMPABLE", errno);
  }
  const rlimit none{0, 0};
  if (setrlimit(RLIMIT_CORE, &none) != 0) return Status::FromErrno("setrlimit RLIMIT_CORE", errno);
  return Status::Ok();
}

Result<int> CountThreads() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return Status::FromErrno("/proc/self/task", errno);
  int threads = 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++threads;
  }
  closedir(dir);
  return threads;
}

Status DropPrivileges(const TargetIdentity& target) {
  // setresuid changes every thread (glibc signals each one), but a thread caught in
  // the middle of something as root is not worth reasoning about: one thread only.
  Result<int> threads = CountThreads();
  if (!threads.ok()) return Status::Error("dropping privileges: " + threads.status().message());
  if (*threads != 1) {
    return Status::Error("dropping privileges: rngmux has " + std::to_string(*threads) +
                         " threads; it must drop them before any other thread starts");
  }
  for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      return Failed("PR_CAPBSET_DROP " + std::to_string(cap), errno);
    }
  }
  if (setgroups(0, nullptr) != 0) return Failed("setgroups", errno);
  if (setresgid(target.gid, target.gid, target.gid) != 0) {
    return Failed("setresgid " + std::to_string(target.gid), errno);
  }
  if (setresuid(target.uid, target.uid, target.uid) != 0) {
    return Failed("setresuid " + std::to_string(target.uid), errno);
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
    return Failed("PR_CAP_AMBIENT_CLEAR_ALL", errno);
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct none[2] = {};
  if (syscall(SYS_capset, &header, none) != 0) return Failed("capset", errno);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Failed("PR_SET_NO_NEW_PRIVS", errno);

  // Trust, then verify: any of these means the drop did not take.
  uid_t ruid, euid, suid;
  gid_t rgid, egid, sgid;
  if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0 ||
      ruid != target.uid || euid != target.uid || suid != target.uid || rgid != target.gid ||
      egid != target.gid || sgid != target.gid) {
    return Status::Error("dropping privileges: the user and group ids did not change");
  }
  __user_cap_data_struct caps[2] = {};
  if (!CapGet(caps) || caps[0].effective != 0 || caps[1].effective != 0 || caps[0].permitted != 0 ||
      caps[1].permitted != 0) {
    return Status::Error("dropping privileges: capabilities are left");
  }
  if (target.uid != 0 && setuid(0) == 0) {
    return Status::Error("dropping privileges: setuid(0) still succeeds");
  }
  return Status::Ok();
}

}  // namespace rngmux
