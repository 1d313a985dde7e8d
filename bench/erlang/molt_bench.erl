%% Drives the baseline: for each state size, start the server, then swap it
%% N times between two compiled versions, timing suspend -> resume: first
%% idle, then with Clients processes each calling it in a loop (as molt's
%% service is swapped under HTTP clients), and print one JSON line per size
%% and mode.
-module(molt_bench).
-export([run/1]).

run([Dir, SizesArg, SwapsArg, ClientsArg]) ->
    Sizes = [list_to_integer(S) || S <- string:tokens(SizesArg, ",")],
    Swaps = [list_to_integer(S) || S <- string:tokens(SwapsArg, ",")],
    Clients = list_to_integer(ClientsArg),
    {ok, V1} = file:read_file(filename:join(Dir, "v1/molt_bench_server.beam")),
    {ok, V2} = file:read_file(filename:join(Dir, "v2/molt_bench_server.beam")),
    lists:foreach(fun({Size, N}) ->
                          size_run(Size, N, V1, V2, 0),
                          size_run(Size, N, V1, V2, Clients)
                  end, lists:zip(Sizes, Swaps)),
    halt(0).

%% Items shaped like molt's bench state: small records of about 32 bytes each.
items(Bytes) -> [{I, <<"name">>, I * 3} || I <- lists:seq(1, max(1, Bytes div 32))].

size_run(Bytes, N, V1, V2, Clients) ->
    code:purge(molt_bench_server),
    {module, _} = code:load_binary(molt_bench_server, "v1", V1),
    {ok, Pid} = molt_bench_server:start_link(items(Bytes)),
    Self = self(),
    Callers = [spawn_link(fun() -> call_loop(Pid, Self, 0) end) || _ <- lists:seq(1, Clients)],
    %% Let the callers get going before the first swap.
    timer:sleep(case Clients of 0 -> 0; _ -> 200 end),
    Times = [swap(Pid, case I rem 2 of 0 -> V2; 1 -> V1 end) || I <- lists:seq(1, N)],
    [C ! stop || C <- Callers],
    Calls = lists:sum([receive {done, C, K} -> K end || C <- Callers]),
    Count = gen_server:call(Pid, get),
    %% Every call answered was counted once: nothing lost across the swaps.
    Count = Calls,
    unlink(Pid),
    exit(Pid, kill),
    Us = lists:sort(Times),
    Mode = case Clients of 0 -> "idle"; _ -> "loaded" end,
    io:format("{\"bytes\":~b,\"swaps\":~b,\"mode\":\"~s\",\"clients\":~b,\"calls\":~b,\"us\":[~s]}~n",
              [Bytes, N, Mode, Clients, Calls, string:join([integer_to_list(T) || T <- Us], ",")]).

%% One client: gen_server:call in a loop until told to stop.
call_loop(Pid, Parent, K) ->
    receive
        stop -> Parent ! {done, self(), K}
    after 0 ->
        _ = gen_server:call(Pid, incr, infinity),
        call_loop(Pid, Parent, K + 1)
    end.

swap(Pid, Bin) ->
    %% Only two versions of a module can be loaded: drop the old one first, outside the timing.
    code:purge(molt_bench_server),
    T0 = erlang:monotonic_time(microsecond),
    ok = sys:suspend(Pid),
    {module, _} = code:load_binary(molt_bench_server, "swap", Bin),
    ok = sys:change_code(Pid, molt_bench_server, undefined, []),
    ok = sys:resume(Pid),
    T1 = erlang:monotonic_time(microsecond),
    T1 - T0.
