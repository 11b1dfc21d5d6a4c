#include "relay/errors.h"

#include <string.h>

#include "relay/control.h"

namespace relay {

ActorError::ActorError(std::vector<Failure> failures)
    : Error([&] {
        std::string text = failures.size() == 1 ? "actor failed: " : "actors failed: ";
        for (std::size_t i = 0; i < failures.size(); ++i) {
          const Failure& f = failures[i];
          if (i) text += "; ";
          text += "[" + f.group + "] (" + f.name + ") pid " + std::to_string(f.pid);
          if (!f.host.empty()) text += " on " + f.host;
          text += ": " + f.reason;
        }
        return text;
      }()),
      failures_(std::move(failures)) {}

Interrupted::Interrupted(int signal)
    : Error(std::string("relay: run interrupted by ") +
            (::sigabbrev_np(signal) ? std::string("SIG") + ::sigabbrev_np(signal)
                                    : "signal " + std::to_string(signal))),
      signal_(signal) {}

const char* to_string(Control c) noexcept {
  switch (c) {
    case Control::poison: return "poison";
    case Control::eol: return "eol";
  }
  return "unknown";
}

}  // namespace relay
