// `setdet train CONFIG --nproc N`: a local launcher in torchrun's mould. It hosts the rendezvous
// store on 127.0.0.1 (a free port unless one is given), starts N copies of this executable with
// torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
// TORCHELASTIC_USE_AGENT_STORE=True) in a process group of their own, and supervises them:
//  - SIGINT / SIGTERM are forwarded once (the workers stop together after the current iteration
//    and save latest.pt); a second one kills them;
//  - when a worker fails, the others are given `grace_seconds` to stop with their own report
//    naming it, then are terminated;
//  - each abnormal exit is reported ("rank 1 (pid 123) was killed by signal 9 (Killed)") and the
//    launcher exits with the first failing worker's code (128 + signal when killed), else 0.
#pragma once

#include <string>
#include <vector>

namespace setdet::dist {

struct LocalLaunch {
  int nproc = 1;
  int master_port = 0;            // 0: a free port
  std::vector<std::string> args;  // the workers' arguments (argv[1:])
  double grace_seconds = 30.0;
};

int launch_local_workers(const LocalLaunch& launch);

// This process's arguments (argv[1:], from /proc/self/cmdline) without the option `name` and
// its value ("--nproc 2" or "--nproc=2").
std::vector<std::string> own_arguments_without(const std::string& name);

}  // namespace setdet::dist
