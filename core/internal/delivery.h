// relay/internal/delivery.h: the answer to a queue put arriving at the broker.
#pragma once

namespace relay::internal {

enum class Delivery { accepted, full, unknown_queue };

}  // namespace relay::internal
