#pragma once

#include <sys/types.h>

#include <string>

#include "common/status.h"

namespace rngmux {

// The user and group a root daemon becomes once everything that needs root is open.
struct TargetIdentity {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string user;   // as given ("nobody" or "65534")
  std::string group;  // as given, or the user's primary group's name
};

// Resolves --user NAME|UID and --group NAME|GID (empty: the user's primary group).
// Reads the user and group databases. Errors name the setting as given:
//   --user "nosuch": no such user
//   --group "nosuch": no such group
//   --group needs --user
Result<TargetIdentity> ResolveIdentity(const std::string& user, const std::string& user_name,
                                       const std::string& group, const std::string& group_name);

// Turns core dumps off for good: PR_SET_DUMPABLE 0 (no dumps, /proc/PID/* owned by
// root, no ptrace by the same user) and RLIMIT_CORE 0. The entropy the daemon holds
// must not end up in a file. Errors name the call that failed.
Status DisableCoreDumps();

// Drops root for good: every capability out of the bounding set, supplementary groups
// cleared, real/effective/saved gid and uid set to `target`, ambient and inheritable
// capabilities cleared, no_new_privs set. Then checks that it took (ids, empty
// effective and permitted sets, setuid(0) refused). Must run while the process has a
// single thread (checked in /proc/self/task). Errors are one line:
//   dropping privileges: rngmux has 3 threads; ...
//   dropping privileges: setresuid 65534: Operation not permitted
Status DropPrivileges(const TargetIdentity& target);

// Threads of this process, from /proc/self/task; an error if it cannot be read.
Result<int> CountThreads();

}  // namespace rngmux
