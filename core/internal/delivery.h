// relay/internal/delivery.h: the answer to a queue put arriving at the broker.
#pragma once

namespace relay::internal {

// accepted: the message is in the queue. full: a bounded queue is full; try
// again once there is room. refused: never deliverable (no such queue, or a
// message that does not decode); the put fails the actor that made it.
enum class Delivery { accepted, full, refused };

}  // namespace relay::internal
