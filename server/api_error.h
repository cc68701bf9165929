#pragma once
// What the HTTP API answers when it refuses a request: a status and the error object OpenAI's
// clients expect, {"error": {"message", "type", "param", "code"}}.
#include <string>

#include "kuiper/base/error.h"

namespace kuiper::server {

class ApiError : public Error {
 public:
  ApiError(int status, std::string type, std::string code, const std::string& message,
           std::string param = {})
      : Error(message), status(status), type(std::move(type)), code(std::move(code)),
        param(std::move(param)) {}

  int status;
  std::string type;   // invalid_request_error, authentication_error, ...
  std::string code;   // machine-readable: invalid_json, context_length_exceeded, ...
  std::string param;  // the request field at fault, if one is
};

// 400 for a request that names `param` wrongly.
inline ApiError invalid_request(std::string code, const std::string& message,
                                std::string param = {}) {
  return ApiError(400, "invalid_request_error", std::move(code), message, std::move(param));
}

// The JSON body of an error response.
std::string error_body(const ApiError& e);

}  // namespace kuiper::server
