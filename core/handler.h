// relay/handler.h: code that runs in the main process during a run.
#pragma once

#include "relay/queue.h"

namespace relay {

// Relay::start(&handler) calls run() in the main process once every actor has
// started; when run() returns, start() goes on to wait for the actors. Actors
// may be given `q` and put() to it; run() typically get()s from it until a sink
// puts Control::eol. If an actor fails while run() is blocked in q.get(), that
// get() throws relay::Error and start() throws the actor's failure.
class Handler {
 public:
  // A handler whose queue is unbounded.
  Handler() = default;
  // A handler whose queue holds at most `maxsize` messages.
  explicit Handler(std::size_t maxsize) : q(maxsize) {}
  virtual ~Handler() = default;
  Queue q;
  virtual void run() = 0;
};

}  // namespace relay
