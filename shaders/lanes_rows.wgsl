// The rows of taps that conv_lanes.wgsl and conv_filter_lanes.wgsl share, loaded once per
// subgroup and handed to every lane: spliced into both kernels where they say
// `// @splice(lanes_rows.wgsl)`, after they have defined c0 (the first input column), hrow{dh}
// (the float offset of each row of taps' input row) and hin{dh} (whether that row is inside the
// input), with sl the lane's subgroup index. Gives a[(dh * (R + FW - 1) + u) * K + k]: channel k
// of input column u of row dh, zero in the padding.
// Each row of taps needs (R + FW - 1) * K consecutive floats from column c0: lane l loads floats
// l + j*SG, j < MS = ceil((R + FW - 1) * K / SG).
let col{i} = c0 + i32((sl + {i*SG}u) / K); // @unroll(((R+FW-1)*K+SG-1)/SG*(1-V4))
let cok{i} = col{i} >= 0 && col{i} < i32(p.in_w); // @unroll(((R+FW-1)*K+SG-1)/SG*(1-V4))
let at{i} = u32(select(0, col{i}, cok{i})) * K + (sl + {i*SG}u) % K; // @unroll(((R+FW-1)*K+SG-1)/SG*(1-V4))
let v{i} = select(0.0, xs[hrow{i/(((R+FW-1)*K+SG-1)/SG)} + at{i%(((R+FW-1)*K+SG-1)/SG)}], hin{i/(((R+FW-1)*K+SG-1)/SG)} && cok{i%(((R+FW-1)*K+SG-1)/SG)}); // @unroll(FH*(((R+FW-1)*K+SG-1)/SG)*(1-V4))
// V4 = 1: the same floats as vec4s (binding xs4, or with TEX = 1 x_texel: the texture that X's
// vec4s were copied into, whose loads lavapipe makes straight-line code where a lane's storage
// load is a loop over the lanes), from the vec4 holding the row's first float,
// S0 floats into it; component e of this lane's j-th vec4 (j < MV) is float
// f = 4 * (sl + j*SG) + e - S0 of the row, column c0 + floor(f / K).
let rb{i} = (i32(hrow{i}) + c0 * i32(K) - i32(S0)) / 4; // @unroll(FH*V4)
let vc{i} = c0 + (i32(4u * (sl + {(i/4)*SG}u)) + {i%4 + 3*K - S0}) / i32(K) - 3; // @unroll(MV*4)
let vok{i} = vc{i} >= 0 && vc{i} < i32(p.in_w); // @unroll(MV*4)
let w{i} = xs4[u32(max(rb{i/MV} + i32(sl + {(i%MV)*SG}u), 0))]; // @unroll(FH*MV*(1-TEX))
let w{i} = x_texel(u32(max(rb{i/MV} + i32(sl + {(i%MV)*SG}u), 0))); // @unroll(FH*MV*TEX)
let v{i} = select(0.0, w{i/4}[{i%4}], hin{i/(MV*4)} && vok{i%(MV*4)}); // @unroll(FH*MV*4)
let a{i} = subgroupBroadcast(v{(i/((R+FW-1)*K))*(((R+FW-1)*K+SG-1)/SG) + (i%((R+FW-1)*K))/SG}, {(i%((R+FW-1)*K))%SG}u); // @unroll(FH*(R+FW-1)*K*(1-V4))
let a{i} = subgroupBroadcast(v{(i/((R+FW-1)*K))*MV*4 + (((i%((R+FW-1)*K))+S0)/4/SG)*4 + ((i%((R+FW-1)*K))+S0)%4}, {(((i%((R+FW-1)*K))+S0)/4)%SG}u); // @unroll(FH*(R+FW-1)*K*V4)
