# pitd's HTTP front door from Elixir with OTP alone (:httpc and :ssl, no packages): a call,
# then a stream whose server-sent events are read as they come (:httpc's stream: :self).
#
#   PIT_URL=http://127.0.0.1:8080 PIT_TOKEN=... elixir examples/clients/elixir.exs
#
# PIT_URL is the front door ([http] listen), PIT_TOKEN a bearer token of tokens.toml (unset
# for a loopback door without tokens), PIT_CA a CA file to trust for https (a self-signed
# deployment; without it the system's CAs). The pools are config/demo.toml's: echo and agent.

defmodule PitExample do
  @timeout 30_000

  def main do
    base = System.get_env("PIT_URL") || fail("set PIT_URL to pitd's front door, such as http://127.0.0.1:8080")
    base = String.trim_trailing(base, "/")
    {:ok, _} = Application.ensure_all_started(:inets)
    {:ok, _} = Application.ensure_all_started(:ssl)
    http_options = [timeout: @timeout, connect_timeout: 5_000] ++ tls_options(base)

    # 1. A call: echo returns its args; Pit-Worker names the worker that ran it.
    case :httpc.request(:post, request(base, "echo/echo", ~s({"hello": "world"}), []), http_options,
           body_format: :binary
         ) do
      {:ok, {{_, 200, _}, headers, body}} ->
        worker = List.keyfind(headers, ~c"pit-worker", 0, {nil, ~c"?"}) |> elem(1)
        IO.puts("call: #{body} from #{worker}")
        String.contains?(body, ~s("world")) || fail("the call did not echo its args")

      {:ok, {{_, status, _}, _, body}} ->
        fail("the call failed: HTTP #{status} #{body}")

      {:error, reason} ->
        fail("no answer from #{base}: #{inspect(reason)}")
    end

    # 2. A stream: agent's tokens, each event printed as it arrives. Events are
    # "event: chunk|end|error", "data: <one line of JSON>", then a blank line.
    args = ~s({"prompt": "one two three", "count": 3, "interval": 0.2})
    accept = [{~c"accept", ~c"text/event-stream"}]
    {:ok, ref} =
      :httpc.request(:post, request(base, "agent/tokens", args, accept), http_options,
        sync: false,
        stream: :self,
        body_format: :binary
      )

    IO.puts("stream:")
    chunks = read_events(ref, "", 0)
    IO.puts("  end after #{chunks} chunks")
    chunks > 0 || fail("no chunk came")
  end

  defp request(base, path, body, headers) do
    auth =
      case System.get_env("PIT_TOKEN") do
        nil -> []
        token -> [{~c"authorization", String.to_charlist("Bearer " <> token)}]
      end

    {String.to_charlist("#{base}/v1/call/#{path}"), auth ++ headers, ~c"application/json", body}
  end

  defp tls_options("https:" <> _ = base) do
    trust =
      case System.get_env("PIT_CA") do
        nil -> [cacerts: :public_key.cacerts_get()]
        ca -> [cacertfile: String.to_charlist(ca)]
      end

    host = URI.parse(base).host

    names =
      case :inet.parse_address(String.to_charlist(host)) do
        {:ok, ip} ->
          # :ssl checks a host given as text against the certificate's DNS names only: for
          # an address, its IP names are checked here instead.
          [server_name_indication: :disable, verify_fun: {&verify_address/3, ip}]

        {:error, _} ->
          [customize_hostname_check: [match_fun: :public_key.pkix_verify_hostname_match_fun(:https)]]
      end

    [ssl: [verify: :verify_peer] ++ trust ++ names]
  end

  defp tls_options(_), do: []

  defp verify_address(_cert, {:bad_cert, _} = reason, _ip), do: {:fail, reason}
  defp verify_address(_cert, {:extension, _}, ip), do: {:unknown, ip}
  defp verify_address(_cert, :valid, ip), do: {:valid, ip}

  defp verify_address(cert, :valid_peer, ip) do
    if :public_key.pkix_verify_hostname(cert, ip: ip),
      do: {:valid, ip},
      else: {:fail, {:bad_cert, :hostname_check_failed}}
  end

  # Reads a stream's messages until its end event; returns how many chunks came.
  defp read_events(ref, buffer, chunks) do
    receive do
      {:http, {^ref, :stream_start, _headers}} ->
        read_events(ref, buffer, chunks)

      {:http, {^ref, :stream, data}} ->
        {events, rest} = split_events(buffer <> data)

        case Enum.reduce_while(events, {:more, chunks}, &on_event/2) do
          {:more, chunks} ->
            read_events(ref, rest, chunks)

          {:end, chunks} ->
            # Done: the rest of the answer is not waited for.
            :httpc.cancel_request(ref)
            chunks
        end

      {:http, {^ref, :stream_end, _headers}} ->
        fail("the stream ended without its end event")

      {:http, {^ref, {{_, status, _}, _headers, body}}} ->
        fail("the stream was refused: HTTP #{status} #{body}")

      {:http, {^ref, {:error, reason}}} ->
        fail("the stream failed: #{inspect(reason)}")
    after
      @timeout -> fail("no event within #{@timeout} ms")
    end
  end

  # Whole events (blank-line separated) and what is left of the last one.
  defp split_events(text) do
    parts = String.split(String.replace(text, "\r\n", "\n"), "\n\n")
    {Enum.drop(parts, -1), List.last(parts)}
  end

  defp on_event(event, {:more, chunks}) do
    fields =
      for line <- String.split(event, "\n"), [name, value] <- [String.split(line, ":", parts: 2)], into: %{} do
        {name, String.trim_leading(value)}
      end

    case fields do
      %{"event" => "chunk", "data" => data} ->
        IO.puts("  chunk: #{data}")
        {:cont, {:more, chunks + 1}}

      %{"event" => "end"} ->
        {:halt, {:end, chunks}}

      %{"event" => "error", "data" => data} ->
        fail("the stream failed: #{data}")

      _ ->
        {:cont, {:more, chunks}}
    end
  end

  def fail(message) do
    IO.puts(:stderr, "elixir.exs: #{message}")
    System.halt(1)
  end
end

PitExample.main()
