%% The Erlang/OTP baseline: a gen_server holding a state of a given size,
%% hot-swapped with sys:suspend, code load, sys:change_code, sys:resume --
%% the same protocol molt's swap follows. Compiled twice with different
%% -vsn attributes (see bench/swap.ts).
-module(molt_bench_server).
-behaviour(gen_server).
-vsn(?VSN).
-export([start_link/1, init/1, handle_call/3, handle_cast/2, code_change/3]).

start_link(Items) -> gen_server:start_link(?MODULE, Items, []).

init(Items) -> {ok, #{count => 0, items => Items}}.

handle_call(incr, _From, S = #{count := C}) -> {reply, C + 1, S#{count := C + 1}};
handle_call(get, _From, S = #{count := C}) -> {reply, C, S}.

handle_cast(_Msg, S) -> {noreply, S}.

%% A migration that touches the state, as molt's restore does.
code_change(_OldVsn, S = #{count := C}, _Extra) -> {ok, S#{count := C}}.
