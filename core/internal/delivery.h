// relay/internal/delivery.h: the answer to a queue put arriving at the broker.
#pragma once

namespace relay::internal {

// accepted: the message is in the queue. full: a bounded queue is full while
// a Handler's run() may still make room; try again once there is. refused:
// never deliverable (no such queue, a message that does not decode, a full
// queue nothing reads); the put fails the actor that made it.
enum class Delivery { accepted, full, refused };

}  // namespace relay::internal
