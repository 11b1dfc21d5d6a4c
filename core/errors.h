// relay/errors.h: the exceptions relay throws.
//
// Every error relay raises at run time derives from relay::Error. Bad use of the
// API before anything runs (wiring, arguments) is std::invalid_argument instead,
// thrown in the caller's own process at the call that got the bad input.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace relay {

// Base of every run-time error relay throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A message value read as the wrong type, or a message with fewer values than
// asked for. The text names the value's index, the expected C++ type and the
// actual msgpack wire type.
class TypeError : public Error {
 public:
  using Error::Error;
};

// A value that msgpack cannot encode, or a frame that cannot be decoded.
class EncodeError : public Error {
 public:
  using Error::Error;
};

// Queue::get() on an empty queue that nothing can fill any more: the run is
// over (every actor has ended, or the run was stopped) or no run is in
// progress. A Handler's run() that reads until its queue closes ends with it:
// Relay::start() does not rethrow a Closed that left run() once the run was
// over, so a run that ended well still returns normally.
class Closed : public Error {
 public:
  using Error::Error;
};

// One or more actors failed: threw, exited early, or were killed by a signal.
// Relay::start() throws it after it has stopped and reaped every other actor.
class ActorError : public Error {
 public:
  struct Failure {
    std::string group;
    std::string name;
    int pid = 0;
    std::string host;
    std::string reason;  // exception text, "exited with status 3", "killed by SIGSEGV"
  };
  explicit ActorError(std::vector<Failure> failures);
  const std::vector<Failure>& failures() const noexcept { return failures_; }

 private:
  std::vector<Failure> failures_;
};

// The end-of-stream counts did not match: an edge between two groups delivered
// fewer (or more) messages than were sent on it.
class AccountingError : public Error {
 public:
  using Error::Error;
};

// The run was stopped by SIGINT or SIGTERM sent to the main process. If a
// program does not catch it, the process ends as if killed by that signal
// (exit status 128 + signal in a shell), as an interrupted program should.
class Interrupted : public Error {
 public:
  explicit Interrupted(int signal);
  int signal() const noexcept { return signal_; }

 private:
  int signal_;
};

}  // namespace relay
